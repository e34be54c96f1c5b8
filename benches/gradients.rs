//! Criterion benches of the gradients: the fused cross-entropy forward and backward
//! (`CrossEntropyGradOp`) against doing them as separate ops (`LossOp::cross_entropy`, then
//! `RowOp` log_softmax, then `BackwardOp` log_softmax with the upstream gradient already
//! resident — building that gradient is not counted, which favours the separate path), at
//! 8,192 × 32,000 and 65,536 × 1,000; and the diagonal mixture's gradients / EM statistics at
//! n = 10⁶, k = 16, dims = 16. Per op: the GPU kernel by timestamp queries (`gpu_kernel`, where
//! the adapter has them), the GPU with data resident by wall clock (`gpu_resident`), and the
//! single-threaded CPU reference. Throughput counts the logits (or points) once.
//!
//! `cargo bench --bench gradients` (on the adapter `WGPU_BACKEND` selects).

mod common;

use common::{Gen, buffer, gpu_benches, group, out_buffer};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use logdomain::reference::{gmm as cpu_gmm, gradients as cpu};
use logdomain::{
    BackwardOp, Covariance, CrossEntropy, CrossEntropyGradOp, Gmm, GmmReduceOp, GmmReduction, Gpu,
    LossOp, RowFn, RowOp, RowsLayout, Strategy,
};

fn cross_entropy(c: &mut Criterion, gpu: &Gpu) {
    let mut rng = Gen(0x1234_5678_9abc_def1);
    for (rows, classes) in [(8192usize, 32_000usize), (65_536, 1000)] {
        let shape = format!("{rows}x{classes}");
        let n = rows * classes;
        let x = rng.vec(n, -10.0, 10.0);
        let t: Vec<i64> = (0..rows).map(|r| (r * 7919 % classes) as i64).collect();
        let t32: Vec<i32> = t.iter().map(|&v| v as i32).collect();
        let (xb, tb) = (
            buffer(gpu, bytemuck::cast_slice(&x)),
            buffer(gpu, bytemuck::cast_slice(&t32)),
        );
        let o = CrossEntropy::default();
        eprintln!(
            "{shape}: the in-place gradient saves a {} MiB gradient buffer",
            (n * 4) >> 20
        );
        let mut g = group(c, "cross_entropy_fwd_bwd", n as u64 * 4);
        // Fused, into a gradient buffer of its own (in place runs the same passes).
        let fused = CrossEntropyGradOp::new(gpu, rows, classes, &o).unwrap();
        let (loss, grad) = (out_buffer(gpu, 1), out_buffer(gpu, n));
        gpu_benches(
            &mut g,
            gpu,
            "fused_",
            &shape,
            &|e| fused.record(e, &xb, &tb, &loss, Some(&grad)).unwrap(),
            &|| {
                fused
                    .kernel_time(gpu, &xb, &tb, &loss, Some(&grad))
                    .unwrap()
            },
        );
        drop(grad);
        // Separate ops: forward loss, log_softmax, its backward of the (resident) upstream
        // gradient −[j = t]/rows of the mean.
        let forward = LossOp::cross_entropy(gpu, rows, classes, &o).unwrap();
        let lsm = RowOp::new(
            gpu,
            RowFn::LogSoftmax,
            RowsLayout::contiguous(rows, classes),
            Strategy::Auto,
        )
        .unwrap();
        let backward = BackwardOp::new(gpu, RowFn::LogSoftmax, rows, classes).unwrap();
        let mut up = vec![0f32; n];
        for (r, &tr) in t.iter().enumerate() {
            up[r * classes + tr as usize] = -1.0 / rows as f32;
        }
        let upb = buffer(gpu, bytemuck::cast_slice(&up));
        drop(up);
        let (lp, grad) = (out_buffer(gpu, n), out_buffer(gpu, n));
        gpu_benches(
            &mut g,
            gpu,
            "separate_",
            &shape,
            &|e| {
                forward.record(e, &[&xb, &tb], &loss).unwrap();
                lsm.record(e, &xb, &lp).unwrap();
                backward.record(e, &[&lp, &upb], &grad).unwrap();
            },
            &|| {
                let a = forward.kernel_time(gpu, &[&xb, &tb], &loss).unwrap()?;
                let b = gpu.kernel_time(&lsm, &xb, &lp).unwrap()?;
                let c = backward.kernel_time(gpu, &[&lp, &upb], &grad).unwrap()?;
                Some(a + b + c)
            },
        );
        drop((lp, grad, upb));
        g.bench_function(BenchmarkId::new("cpu_reference", &shape), |b| {
            b.iter(|| cpu::cross_entropy_with_grad(&x, rows, classes, &t, &o))
        });
        g.finish();
    }
}

fn gmm(c: &mut Criterion, gpu: &Gpu) {
    let mut rng = Gen(0x0bad_5eed_1234_5678);
    let (n, k, d) = (1_000_000usize, 16usize, 16usize);
    let points = rng.vec(n * d, -4.0, 4.0);
    let pb = buffer(gpu, bytemuck::cast_slice(&points));
    let model = Gmm {
        weights: vec![1.0 / k as f32; k],
        means: rng.vec(k * d, -2.0, 2.0),
        covariance: Covariance::Diag(rng.vec(k * d, 0.5, 2.0)),
    };
    let shape = format!("diag_n{n}_k{k}_d{d}");
    for (name, kind) in [
        ("gmm_sufficient_stats", GmmReduction::SufficientStats),
        ("gmm_gradients", GmmReduction::Gradients),
    ] {
        let op = GmmReduceOp::new(gpu, n, d, &model, kind).unwrap();
        let out = out_buffer(gpu, op.output_len());
        let mut g = group(c, name, (n * d * 4) as u64);
        gpu_benches(
            &mut g,
            gpu,
            "",
            &shape,
            &|e| op.record(e, &pb, &out).unwrap(),
            &|| op.kernel_time(gpu, &pb, &out).unwrap(),
        );
        g.bench_function(BenchmarkId::new("cpu_reference", &shape), |b| {
            b.iter(|| cpu_gmm::moments(&points, n, d, &model, kind))
        });
        g.finish();
    }
}

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("adapter: {}", gpu.info());
    cross_entropy(c, &gpu);
    gmm(c, &gpu);
}

criterion_group!(benches, bench);
criterion_main!(benches);
