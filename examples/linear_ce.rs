//! The fused linear cross-entropy against the materialised path with the library's own kernels:
//! GPU time and the memory each path allocates, for the forward and for the forward and
//! backward, data resident.
//!
//! - fused: `LinearCrossEntropyOp` (forward), `LinearCrossEntropyOp::with_grad`.
//! - materialised: the logits `h · Wᵀ` (`LinearCrossEntropyOp::logits`, the same dot products)
//!   into a `tokens × vocab` buffer, then `LossOp::cross_entropy` (forward), or
//!   `CrossEntropyGradOp::in_place` (loss and dloss/dlogits over the logits) and the gradient
//!   products `LinearCrossEntropyOp::dense_grads`.
//!
//! Times are the median of `--reps` runs after one warm-up: timestamp queries where the adapter
//! has them, else the wall clock of record, submit and wait. Memory is what each path allocates
//! besides its inputs (hidden, weight, targets) and its results (loss, lse, gradients): the fused
//! op's scratch, the materialised path's logits (its row ops' own scratch not counted, so a
//! lower bound).
//!
//! `cargo run --release --example linear_ce -- [--tokens 4096] [--dims 1024] [--vocab 32000]
//! [--reps 3] [--warmup 1] [--scale 2] [--grad-filter]`

use std::time::{Duration, Instant};

use logdomain::linear::Shape;
use logdomain::{
    CrossEntropy, CrossEntropyGradOp, Gpu, InputFormat, Io, LinearCrossEntropy,
    LinearCrossEntropyOp, LossOp, Op,
};
use wgpu::util::DeviceExt;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median time of `reps` runs of `run` (each returning the GPU time, if known) after
/// `--warmup` runs (default 1).
fn median(reps: usize, mut run: impl FnMut() -> Option<Duration>) -> Duration {
    let warmup = arg("--warmup", 1);
    let mut times: Vec<Duration> = (0..reps.max(1) + warmup)
        .map(|_| {
            let start = Instant::now();
            run().unwrap_or_else(|| start.elapsed())
        })
        .skip(warmup)
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), logdomain::Error> {
    let gpu = Gpu::new()?;
    let (n, d, v, reps) = (
        arg("--tokens", 4096),
        arg("--dims", 1024),
        arg("--vocab", 32_000),
        arg("--reps", 3),
    );
    let limits = gpu.device().limits();
    println!("adapter: {}", gpu.info());
    println!(
        "max_buffer_size {} B, max_storage_buffer_binding_size {} B",
        limits.max_buffer_size, limits.max_storage_buffer_binding_size
    );
    println!("tokens {n}, dims {d}, vocab {v}; median of {reps} runs");
    let s = Shape {
        tokens: n,
        dims: d,
        vocab: v,
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut uniform = |scale: f32| ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale;
    // --scale widens the logits (their standard deviation is about scale · √dims / 30).
    let scale = arg("--scale", 2) as f32;
    let hidden: Vec<f32> = (0..n * d).map(|_| uniform(scale)).collect();
    let weight: Vec<f32> = (0..v * d).map(|_| uniform(0.2)).collect();
    let targets: Vec<i32> = (0..n).map(|i| ((i * 7919) % v) as i32).collect();
    let dev = gpu.device();
    let usage = wgpu::BufferUsages::STORAGE;
    let init = |bytes: &[u8]| {
        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage,
        })
    };
    let empty = |bytes: u64| {
        dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.max(4),
            usage,
            mapped_at_creation: false,
        })
    };
    let (hb, wb, tb) = (
        init(bytemuck::cast_slice(&hidden)),
        init(bytemuck::cast_slice(&weight)),
        init(bytemuck::cast_slice(&targets)),
    );
    let o = LinearCrossEntropy {
        grad_filter: std::env::args().any(|a| a == "--grad-filter"),
        ..LinearCrossEntropy::default()
    };
    let flops = 2.0 * n as f64 * d as f64 * v as f64;
    let input_bytes = ((n * d + v * d) * 4 + n * 4) as f64;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let report = |what: &str, t: Duration, products: f64, mem: u64| {
        let secs = t.as_secs_f64();
        println!(
            "{what:<34} {:>10.1} ms {:>8.2} GB/s {:>8.1} GFLOP/s {:>10.2} MiB",
            secs * 1e3,
            input_bytes / secs / 1e9,
            products * flops / secs / 1e9,
            mib(mem)
        );
    };
    println!(
        "{:<34} {:>13} {:>13} {:>16} {:>14}",
        "path", "time", "read", "dot products", "memory"
    );
    // The fused op, timed on fresh output buffers: its time and scratch.
    let fused = |op: &LinearCrossEntropyOp| {
        let outs: Vec<wgpu::Buffer> = op.output_bytes_needed().iter().map(|&b| empty(b)).collect();
        let outs_ref: Vec<&wgpu::Buffer> = outs.iter().collect();
        let io = Io {
            inputs: &[&hb, &wb, &tb],
            outputs: &outs_ref,
        };
        let t = median(reps, || op.time_io(&gpu, io).expect("the fused op"));
        (t, op.scratch_bytes())
    };
    let fwd = LinearCrossEntropyOp::new(&gpu, s, false, &o, InputFormat::F32)?;
    let (fused_fwd, fused_fwd_mem) = fused(&fwd);
    report("fused forward", fused_fwd, 1.0, fused_fwd_mem);
    drop(fwd);
    let both = LinearCrossEntropyOp::with_grad(&gpu, s, false, &o, InputFormat::F32)?;
    let (fused_both, fused_both_mem) = fused(&both);
    report("fused forward + backward", fused_both, 3.0, fused_both_mem);
    drop(both);
    // The materialised path, where its logits fit one buffer.
    let logits_bytes = (n * v * 4) as u64;
    if logits_bytes > limits.max_buffer_size {
        println!(
            "materialised: cannot run here (the {n} × {v} logits take {logits_bytes} bytes; \
             max_buffer_size is {})",
            limits.max_buffer_size
        );
        return Ok(());
    }
    let logits_op = match LinearCrossEntropyOp::logits(&gpu, s, false, None, InputFormat::F32) {
        Ok(op) => op,
        Err(e) => {
            println!("materialised: cannot run here ({e})");
            return Ok(());
        }
    };
    let logits = empty(logits_bytes);
    let loss = empty(4);
    let ce = LossOp::cross_entropy(&gpu, n, v, &CrossEntropy::default())?;
    let t_logits = median(reps, || {
        logits_op
            .time_io(
                &gpu,
                Io {
                    inputs: &[&hb, &wb, &tb],
                    outputs: &[&logits],
                },
            )
            .expect("logits")
    });
    let t_ce = median(reps, || {
        ce.time_io(
            &gpu,
            Io {
                inputs: &[&logits, &tb],
                outputs: &[&loss],
            },
        )
        .expect("cross-entropy")
    });
    // Scratch of the row ops is not counted: the logits alone are the materialised path's
    // memory here, a lower bound.
    report("materialised forward", t_logits + t_ce, 1.0, logits_bytes);
    let mat_fwd = t_logits + t_ce;
    let ce_grad = CrossEntropyGradOp::in_place(&gpu, n, v, &CrossEntropy::default())?;
    let dense = LinearCrossEntropyOp::dense_grads(&gpu, s, false)?;
    let grads: Vec<wgpu::Buffer> = dense
        .output_bytes_needed()
        .iter()
        .map(|&b| empty(b))
        .collect();
    let grads_ref: Vec<&wgpu::Buffer> = grads.iter().collect();
    let t_back = median(reps, || {
        let a = logits_op
            .time_io(
                &gpu,
                Io {
                    inputs: &[&hb, &wb, &tb],
                    outputs: &[&logits],
                },
            )
            .expect("logits");
        let b = ce_grad
            .time_io(
                &gpu,
                Io {
                    inputs: &[&logits, &tb],
                    outputs: &[&loss],
                },
            )
            .expect("cross-entropy gradient");
        let c = dense
            .time_io(
                &gpu,
                Io {
                    inputs: &[&hb, &wb, &tb, &logits],
                    outputs: &grads_ref,
                },
            )
            .expect("gradient products");
        Some(a? + b? + c?)
    });
    let mat_both_mem = logits_bytes + dense.scratch_bytes();
    report("materialised forward + backward", t_back, 3.0, mat_both_mem);
    println!(
        "fused / materialised: forward {:.2}× the time, 1/{:.0} of the memory; forward + backward {:.2}× the time, 1/{:.0} of the memory",
        fused_fwd.as_secs_f64() / mat_fwd.as_secs_f64(),
        logits_bytes as f64 / fused_fwd_mem as f64,
        fused_both.as_secs_f64() / t_back.as_secs_f64(),
        mat_both_mem as f64 / fused_both_mem as f64,
    );
    Ok(())
}
