//! Concurrent use on whatever adapter `Gpu::new()` finds (run with WGPU_BACKEND=vulkan and
//! WGPU_BACKEND=gl): several threads on one `Gpu` and a second `Gpu` in the same process, while
//! one thread runs a job long enough to hold a GL device's context for more than 6 s if it were
//! submitted at once (wgpu-hal's GL backend panics in any thread that waits that long for the
//! context). Every call returns a value or an `Error`, none panics, and every result is bit for
//! bit that of the same call made alone.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use common::*;
use logdomain::{Bce, Covariance, Error, Gmm, Gpu, LossOp, Reduction, RowFn, RowOp, RowsLayout};
use wgpu::util::DeviceExt;

/// The long job: the score of 393,216 points under a 64-component full-covariance mixture in 32
/// dimensions, about 14 G multiply-adds. On llvmpipe (2 cores, Mesa 22.3) it takes about 8 s,
/// which one submit held the GL context for before the blocking calls bounded their dispatches.
const LONG_POINTS: usize = 393_216;
const LONG_K: usize = 64;
const LONG_D: usize = 32;

fn long_job() -> (Vec<f32>, Gmm) {
    let mut rng = Rng(0x5eed);
    let points = rng.vec(LONG_POINTS * LONG_D, -2.0, 2.0);
    let (k, d) = (LONG_K, LONG_D);
    let mut chol = vec![0.0f32; k * d * d];
    for c in 0..k {
        for i in 0..d {
            for j in i..d {
                chol[c * d * d + i * d + j] = if i == j {
                    rng.uniform(0.5, 1.5)
                } else {
                    rng.uniform(-0.05, 0.05)
                };
            }
        }
    }
    let gmm = Gmm {
        weights: vec![1.0 / k as f32; k],
        means: rng.vec(k * d, -1.0, 1.0),
        covariance: Covariance::Full(chol),
    };
    (points, gmm)
}

/// What a thread of small calls does in a round.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Ops made and dropped: buffers created and destroyed, pipelines looked up; no submit.
    Ops,
    /// An op recorded into the caller's encoder, submitted by the caller, read back.
    Record,
    /// Blocking calls.
    Blocking,
    /// All three.
    All,
    /// A renderer's own calls on the device the crate shares: a buffer made, written and
    /// dropped. wgpu-hal's GL backend panics in such a call if the crate holds the context for
    /// 6 s.
    Device,
}

/// One round of small calls of `kind`, `i` choosing the shapes. Returns what they computed, as
/// bits.
fn small_calls(gpu: &Gpu, kind: Kind, i: usize) -> Result<Vec<u32>, Error> {
    let mut rng = Rng(1000 + i as u64);
    let mut bits = Vec::new();
    let (rows, cols) = (3, 5 + i % 7);
    let x = rng.vec(rows * cols, -30.0, 30.0);
    let layout = RowsLayout::contiguous(rows + i, cols);
    let bce = |reduction| Bce {
        pos_weight: None,
        reduction,
    };
    if matches!(kind, Kind::Ops | Kind::All) {
        let op = RowOp::new(gpu, RowFn::Softmax, layout, logdomain::Strategy::Auto)?;
        bits.push(op.output_bytes_needed() as u32);
        drop(op);
        let loss =
            LossOp::binary_cross_entropy_with_logits(gpu, rows + i, cols, &bce(Reduction::Mean))?;
        bits.push(loss.output_len() as u32);
        drop(loss);
    }
    if matches!(kind, Kind::Record | Kind::All) {
        let op = RowOp::new(
            gpu,
            RowFn::LogSoftmax,
            RowsLayout::contiguous(rows, cols),
            logdomain::Strategy::Auto,
        )?;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let input = gpu
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&x),
                usage,
            });
        let output = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: op.output_bytes_needed(),
            usage,
            mapped_at_creation: false,
        });
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        op.record(&mut encoder, &input, &output)?;
        gpu.queue().submit([encoder.finish()]);
        let v = gpu.read_f32(&output, (rows * cols * 4) as u64)?;
        bits.extend(v.iter().map(|v| v.to_bits()));
    }
    if matches!(kind, Kind::Device) {
        let buffer = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 256,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue()
            .write_buffer(&buffer, 0, bytemuck::cast_slice(&x));
        bits.push(buffer.size() as u32);
    }
    if matches!(kind, Kind::Blocking | Kind::All) {
        bits.extend(gpu.logsumexp(&x, rows, cols)?.iter().map(|v| v.to_bits()));
        let y: Vec<f32> = (0..rows * cols).map(|j| (j % 2) as f32).collect();
        let v = gpu.binary_cross_entropy_with_logits(&x, &y, rows, cols, &bce(Reduction::Sum))?;
        bits.extend(v.iter().map(|v| v.to_bits()));
    }
    Ok(bits)
}

#[test]
fn threads_and_devices_during_a_long_job() {
    let a = gpu();
    let b = Gpu::new().unwrap_or_else(|e| panic!("a second Gpu: {e}"));
    b.fill_outputs_with_sentinel(true);
    let (points, gmm) = long_job();
    // Alone first: the results every concurrent call must reproduce.
    let t = Instant::now();
    let long_alone = a
        .gmm_score_samples(&points, LONG_POINTS, LONG_D, &gmm)
        .expect("the long job alone");
    let long_time = t.elapsed();
    eprintln!("the long job alone: {long_time:?} on {}", a.info());
    assert!(long_alone.iter().all(|v| v.is_finite()));
    const ROUNDS: usize = 7;
    const KINDS: [Kind; 5] = [
        Kind::Ops,
        Kind::Record,
        Kind::Blocking,
        Kind::All,
        Kind::Device,
    ];
    let run_alone = |gpu: &Gpu| -> Vec<Vec<Vec<u32>>> {
        KINDS
            .iter()
            .map(|&kind| {
                (0..ROUNDS)
                    .map(|i| small_calls(gpu, kind, i).expect("small calls alone"))
                    .collect()
            })
            .collect()
    };
    let alone = run_alone(a);
    assert_eq!(
        alone,
        run_alone(&b),
        "the two Gpus are one adapter: the same bits"
    );

    let done = AtomicBool::new(false);
    let calls = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let long = s.spawn(|| {
            let r = a.gmm_score_samples(&points, LONG_POINTS, LONG_D, &gmm);
            done.store(true, Ordering::SeqCst);
            r
        });
        // Four threads on the long job's Gpu, one of each kind, and two on the other Gpu,
        // calling until the long job is done (and at least one round each).
        let threads = [(a, 0), (a, 1), (a, 2), (a, 4), (&b, 3), (&b, 0)];
        let mut small = Vec::new();
        for (t, (gpu, kind)) in threads.into_iter().enumerate() {
            let (done, calls, alone) = (&done, &calls, &alone[kind]);
            small.push(s.spawn(move || -> Result<usize, String> {
                let mut round = t;
                loop {
                    let i = round % ROUNDS;
                    let got =
                        small_calls(gpu, KINDS[kind], i).map_err(|e| format!("thread {t}: {e}"))?;
                    if got != alone[i] {
                        return Err(format!("thread {t}, round {i}: bits differ from alone"));
                    }
                    calls.fetch_add(1, Ordering::SeqCst);
                    round += 1;
                    if done.load(Ordering::SeqCst) {
                        return Ok(round - t);
                    }
                }
            }));
        }
        let long = long
            .join()
            .unwrap_or_else(|_| panic!("the long job's thread panicked"))
            .expect("the long job with other threads");
        assert!(
            long.iter()
                .zip(&long_alone)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "the long job's bits differ from its run alone"
        );
        for (t, h) in small.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(rounds)) => eprintln!("thread {t}: {rounds} rounds"),
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => panic!("small-call thread {t} panicked"),
            }
        }
    });
    eprintln!(
        "{} rounds of small calls during the long job",
        calls.load(Ordering::SeqCst)
    );
}
