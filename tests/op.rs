//! The one op shape: every op type records and times through [`Op`] exactly as through its own
//! `record`, and wrong buffer counts are errors, not panics.

mod common;

use common::{Rng, gpu};
use logdomain::{
    Covariance, CrossEntropy, CrossEntropyGradOp, DataLayout, Error, Gmm, GmmOp, GmmOutput, Gpu,
    Io, LogFn, LogOp, LossOp, Op, RowFn, RowOp, RowsLayout, SENTINEL_BITS, Strategy,
};
use wgpu::util::DeviceExt;

fn buffer(gpu: &Gpu, bytes: &[u8]) -> wgpu::Buffer {
    gpu.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
}

/// Records `op` through the trait on `inputs`, with outputs of `output_words` words each filled
/// with the sentinel first; returns every output's bits.
fn run_io(gpu: &Gpu, op: &dyn Op, inputs: &[&[u8]], output_words: &[usize]) -> Vec<Vec<u32>> {
    assert_eq!(op.input_names().len(), inputs.len());
    assert_eq!(op.output_names().len(), output_words.len());
    let ins: Vec<wgpu::Buffer> = inputs.iter().map(|b| buffer(gpu, b)).collect();
    let outs: Vec<wgpu::Buffer> = output_words
        .iter()
        .map(|&w| buffer(gpu, bytemuck::cast_slice(&vec![SENTINEL_BITS; w.max(1)])))
        .collect();
    let in_refs: Vec<&wgpu::Buffer> = ins.iter().collect();
    let out_refs: Vec<&wgpu::Buffer> = outs.iter().collect();
    let io = Io {
        inputs: &in_refs,
        outputs: &out_refs,
    };
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record_io(&mut encoder, io).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let timed = op.time_io(gpu, io).unwrap();
    assert_eq!(
        timed.is_some(),
        gpu.info()
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    );
    outs.iter()
        .zip(output_words)
        .map(|(b, &w)| {
            let v = gpu.read_f32(b, (w * 4) as u64).unwrap();
            v.iter().map(|x| x.to_bits()).collect()
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn every_op_records_through_the_trait_as_its_blocking_call_computes() {
    let gpu = gpu();
    let mut rng = Rng(19);
    let (rows, cols) = (37, 300);
    let x = rng.vec(rows * cols, -30.0, 30.0);
    let xb: &[u8] = bytemuck::cast_slice(&x);

    // The N-d op, reading axis 0 where it lies, with and without a mask.
    for func in [RowFn::Logsumexp, RowFn::LogSoftmax] {
        let layout = logdomain::NdLayout::contiguous(&[rows, cols]);
        let op = logdomain::AxisOp::new(gpu, func, &layout, 0).unwrap();
        let n = if func.reduces() { cols } else { rows * cols };
        let got = run_io(gpu, &op, &[xb], &[n]);
        let want = gpu.reduce_axes(func, &x, &[rows, cols], 0, false).unwrap();
        assert_eq!(got[0], bits(&want.values), "AxisOp {func:?}");
        let where_: Vec<bool> = (0..cols).map(|c| c % 7 != 0).collect();
        let options = logdomain::AxisOptions {
            where_shape: Some(vec![cols]),
            ..Default::default()
        };
        let op = logdomain::AxisOp::with_options(gpu, func, &layout, 0, &options).unwrap();
        let packed = logdomain::masked::pack_mask(&where_);
        let got = run_io(gpu, &op, &[xb, bytemuck::cast_slice(&packed)], &[n]);
        let want = gpu
            .reduce_axes_masked(func, &x, &[rows, cols], &where_, &[cols], 0, false)
            .unwrap();
        assert_eq!(got[0], bits(&want.values), "masked AxisOp {func:?}");
    }

    for func in [RowFn::Logsumexp, RowFn::Softmax, RowFn::LogSoftmax] {
        let op = RowOp::new(
            gpu,
            func,
            RowsLayout::contiguous(rows, cols),
            Strategy::Auto,
        )
        .unwrap();
        let got = run_io(gpu, &op, &[xb], &[func.output_len(rows, cols)]);
        let want = match func {
            RowFn::Logsumexp => gpu.logsumexp(&x, rows, cols),
            RowFn::Softmax => gpu.softmax(&x, rows, cols),
            _ => gpu.log_softmax(&x, rows, cols),
        }
        .unwrap();
        assert_eq!(got[0], bits(&want), "{func:?}");
    }

    let targets: Vec<i64> = (0..rows as i64).map(|r| (r * 7) % cols as i64).collect();
    let t32: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
    let tb: &[u8] = bytemuck::cast_slice(&t32);
    let options = CrossEntropy::default();
    let loss = LossOp::cross_entropy(gpu, rows, cols, &options).unwrap();
    let got = run_io(gpu, &loss, &[xb, tb], &[loss.output_len()]);
    let want = gpu
        .cross_entropy(&x, rows, cols, &targets, &options)
        .unwrap();
    assert_eq!(got[0], bits(&want), "cross_entropy");

    let grad = CrossEntropyGradOp::new(gpu, rows, cols, &options).unwrap();
    assert_eq!(grad.output_names(), ["loss", "gradient"]);
    let got = run_io(gpu, &grad, &[xb, tb], &[grad.loss_len(), grad.grad_len()]);
    let (want_loss, want_grad) = gpu
        .cross_entropy_with_grad(&x, rows, cols, &targets, &options)
        .unwrap();
    assert_eq!(got[0], bits(&want_loss), "cross_entropy_with_grad loss");
    assert_eq!(got[1], bits(&want_grad), "cross_entropy_with_grad gradient");

    let (n, d, k) = (50, 3, 4);
    let points = rng.vec(n * d, -3.0, 3.0);
    let gmm = Gmm {
        weights: vec![0.25; k],
        means: rng.vec(k * d, -2.0, 2.0),
        covariance: Covariance::Diag(rng.vec(k * d, 0.5, 2.0)),
    };
    let op = GmmOp::new(gpu, n, d, &gmm, GmmOutput::ScoreSamples).unwrap();
    let got = run_io(gpu, &op, &[bytemuck::cast_slice(&points)], &[n]);
    let want = gpu.gmm_score_samples(&points, n, d, &gmm).unwrap();
    assert_eq!(got[0], bits(&want), "gmm_score_samples");

    let positive: Vec<f32> = x.iter().map(|v| v.abs() + 0.5).collect();
    let op = LogOp::transform(gpu, LogFn::Ln, DataLayout::contiguous(1, positive.len())).unwrap();
    let got = run_io(
        gpu,
        &op,
        &[bytemuck::cast_slice(&positive)],
        &[positive.len()],
    );
    let want = gpu.log_transform(&positive, LogFn::Ln).unwrap();
    assert_eq!(got[0], bits(&want), "ln");
}

#[test]
fn wrong_buffer_counts_are_errors() {
    let gpu = gpu();
    let op = RowOp::new(
        gpu,
        RowFn::Softmax,
        RowsLayout::contiguous(2, 8),
        Strategy::Auto,
    )
    .unwrap();
    let a = buffer(gpu, &[0u8; 64]);
    let b = buffer(gpu, &[0u8; 64]);
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    for (inputs, outputs) in [
        (&[][..], &[&b][..]),
        (&[&a][..], &[][..]),
        (&[&a][..], &[&b, &b][..]),
        (&[&a, &a][..], &[&b][..]),
    ] {
        let r = op.record_io(&mut encoder, Io { inputs, outputs });
        assert!(
            matches!(r, Err(Error::Buffer(_))),
            "{} in, {} out: {r:?}",
            inputs.len(),
            outputs.len()
        );
    }
    let options = CrossEntropy::default();
    let grad = CrossEntropyGradOp::new(gpu, 2, 8, &options).unwrap();
    let r = grad.record_io(
        &mut encoder,
        Io {
            inputs: &[&a, &b],
            outputs: &[&a],
        },
    );
    assert!(matches!(r, Err(Error::Buffer(_))), "{r:?}");
}
