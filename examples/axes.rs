//! GPU time of reducing axis 0 of a row-major (R, C) array where it lies (`AxisOp`, the strided
//! kernels) against reducing axis 1 of its transpose, a row-major (C, R) array (the row kernels,
//! `Strategy::Auto`): the same results from the same bytes, one read down the columns, one along
//! the rows. Median of 15 runs of each, the two alternating, after one warm-up (timestamp queries
//! where the adapter has them, else the wall clock of record, submit and wait), data resident.
//!
//! `cargo run --release --example axes [RxC ...]` (default: 4096x4096 65536x256)

use std::time::{Duration, Instant};

use logdomain::{AxisOp, Gpu, NdLayout, RowFn};
use wgpu::util::DeviceExt;

/// The median GPU time of each op over `RUNS` runs after one warm-up, the two ops alternating
/// so that both see the same state of the machine (a software adapter's speed drifts by tens
/// of per cent within a minute).
fn medians(
    gpu: &Gpu,
    ops: [&AxisOp; 2],
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> [Duration; 2] {
    const RUNS: usize = 15;
    let time = |op: &AxisOp| {
        let start = Instant::now();
        let t = op.kernel_time(gpu, input, output).expect("run");
        t.unwrap_or_else(|| start.elapsed())
    };
    // The first run of each warms caches and pipelines.
    let _ = ops.map(time);
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        for (k, op) in ops.iter().enumerate() {
            times[k].push(time(op));
        }
    }
    times.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    })
}

fn main() -> Result<(), logdomain::Error> {
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.info());
    let mut shapes: Vec<(usize, usize)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            a.split_once('x')
                .and_then(|(r, c)| Some((r.parse().ok()?, c.parse().ok()?)))
        })
        .collect();
    if shapes.is_empty() {
        shapes = vec![(4096, 4096), (65_536, 256)];
    }
    println!(
        "{:<12} {:>12} {:>16} {:>16} {:>7}",
        "function", "shape", "axis 0 (ms)", "transposed (ms)", "ratio"
    );
    for (r, c) in shapes {
        let x: Vec<f32> = (0..r * c)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01)
            .collect();
        let usage = wgpu::BufferUsages::STORAGE;
        let input = gpu
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&x),
                usage,
            });
        let output = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (r * c * 4) as u64,
            usage,
            mapped_at_creation: false,
        });
        for func in [RowFn::Logsumexp, RowFn::LogSoftmax] {
            let down = AxisOp::new(&gpu, func, &NdLayout::contiguous(&[r, c]), 0)?;
            let along = AxisOp::new(&gpu, func, &NdLayout::contiguous(&[c, r]), 1)?;
            let [a, b] = medians(&gpu, [&down, &along], &input, &output);
            println!(
                "{:<12} {:>12} {:>16.2} {:>16.2} {:>7.2}   ({:?}, segments of {}; {:?})",
                format!("{func:?}"),
                format!("{r}x{c}"),
                a.as_secs_f64() * 1e3,
                b.as_secs_f64() * 1e3,
                a.as_secs_f64() / b.as_secs_f64(),
                down.kernel(),
                down.segment_len(),
                along.kernel(),
            );
        }
    }
    Ok(())
}
