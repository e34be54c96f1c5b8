//! `cargo run --release`: the main job on data generated on the spot. Row-wise log-sum-exp and
//! log-softmax of a 4096 × 4096 batch on the adapter wgpu picks (a software adapter where there is
//! no GPU), checked against the CPU reference, with times.

use std::time::{Duration, Instant};

use logdomain::{Gpu, RowFn, RowOp, RowsLayout, Strategy, reference::logsumexp as cpu};
use wgpu::util::DeviceExt;

fn median(
    mut f: impl FnMut() -> Result<(), logdomain::Error>,
    runs: usize,
) -> Result<Duration, logdomain::Error> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[runs / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max)
}

fn run() -> Result<(), logdomain::Error> {
    let gpu = Gpu::new()?;
    println!(
        "logdomain {}: row-wise log-sum-exp and log-softmax",
        env!("CARGO_PKG_VERSION")
    );
    println!("adapter: {}", gpu.info());
    let (rows, cols) = (4096usize, 4096usize);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let x: Vec<f32> = (0..rows * cols)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 40.0 - 20.0
        })
        .collect();
    println!(
        "input: {rows} × {cols} f32 uniform in [-20, 20) ({} MiB)\n",
        (rows * cols * 4) >> 20
    );

    let device = gpu.device();
    let input = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("demo input"),
        contents: bytemuck::cast_slice(&x),
        usage: wgpu::BufferUsages::STORAGE,
    });
    println!(
        "{:<12} {:>10} {:>12} {:>14} {:>14} {:>14} {:>12}",
        "op",
        "strategy",
        "GPU kernel",
        "GPU resident",
        "GPU end-to-end",
        "CPU reference",
        "max |Δ| vs CPU"
    );
    for func in [RowFn::Logsumexp, RowFn::LogSoftmax, RowFn::Softmax] {
        let op = RowOp::new(
            &gpu,
            func,
            RowsLayout::contiguous(rows, cols),
            Strategy::Auto,
        )?;
        let output = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("demo output"),
            size: op.output_bytes_needed(),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let resident = median(
            || {
                let mut encoder = device.create_command_encoder(&Default::default());
                op.record(&mut encoder, &input, &output)?;
                gpu.queue().submit([encoder.finish()]);
                device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| logdomain::Error::Gpu(e.to_string()))?;
                Ok(())
            },
            5,
        )?;
        // GPU time from timestamp queries where the adapter has them: the median of 5 runs.
        let mut kernel = Vec::new();
        for _ in 0..5 {
            kernel.extend(gpu.kernel_time(&op, &input, &output)?);
        }
        kernel.sort();
        let kernel = kernel
            .get(kernel.len() / 2)
            .map_or("n/a".to_string(), |d| format!("{:.2} ms", ms(*d)));
        let blocking = |x: &[f32]| match func {
            RowFn::Logsumexp => gpu.logsumexp(x, rows, cols),
            RowFn::Softmax => gpu.softmax(x, rows, cols),
            RowFn::LogSoftmax => gpu.log_softmax(x, rows, cols),
            RowFn::LogsumexpParts => gpu.logsumexp_parts(x, rows, cols),
        };
        let got = blocking(&x)?;
        let end_to_end = median(|| blocking(&x).map(|_| ()), 3)?;
        let t = Instant::now();
        let want = match func {
            RowFn::Logsumexp => cpu::logsumexp(&x, rows, cols),
            RowFn::Softmax => cpu::softmax(&x, rows, cols),
            RowFn::LogSoftmax => cpu::log_softmax(&x, rows, cols),
            RowFn::LogsumexpParts => cpu::logsumexp_parts(&x, rows, cols),
        };
        let cpu_time = t.elapsed();
        println!(
            "{:<12} {:>10} {:>12} {:>11.2} ms {:>11.1} ms {:>11.1} ms {:>12.2e}",
            format!("{func:?}"),
            format!("{:?}", op.strategy()).replace("PerRow", ""),
            kernel,
            ms(resident),
            ms(end_to_end),
            ms(cpu_time),
            max_abs_diff(&got, &want)
        );
    }
    let tiny = gpu.logsumexp(&[0.0, -40.0], 1, 2)?[0];
    println!(
        "\nlogsumexp([0, -40]) = {tiny:e} (log1p precision, as SciPy >= 1.15; the naive formula gives 0)"
    );
    let big = gpu.logsumexp(&[3e38, 3e38], 1, 2)?[0];
    println!("logsumexp([3e38, 3e38]) = {big:e} (no overflow)");
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
