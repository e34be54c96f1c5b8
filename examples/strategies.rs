//! GPU time (timestamp queries where the adapter has them, else the wall clock of record, submit
//! and wait) of every strategy the adapter can run, for each function and bench shape, with data
//! resident: the measurements behind `Strategy::Auto`'s choices.
//!
//! `cargo run --release --example strategies [ROWSxCOLS ...] [STRATEGY ...]` (strategies by
//! name, e.g. `SubgroupVec4`; default: every one the adapter has)

use std::time::Instant;

use logdomain::{Gpu, RowFn, RowOp, RowsLayout, Strategy};
use wgpu::util::DeviceExt;

fn main() -> Result<(), logdomain::Error> {
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.info());
    let timestamps = gpu
        .device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY);
    println!(
        "times: median of 5, {}",
        if timestamps {
            "GPU timestamp queries"
        } else {
            "wall clock (no timestamp queries)"
        }
    );
    let mut shapes: Vec<(usize, usize)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            a.split_once('x')
                .and_then(|(r, c)| Some((r.parse().ok()?, c.parse().ok()?)))
        })
        .collect();
    println!("(* a vec4 strategy the layout does not allow, run as its scalar form)");
    if shapes.is_empty() {
        shapes = vec![(4096, 4096), (65_536, 256), (256, 65_536), (1_048_576, 16)];
    }
    let names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.contains('x'))
        .collect();
    let strategies: Vec<Strategy> = gpu
        .strategies()
        .into_iter()
        .filter(|s| names.is_empty() || names.contains(&format!("{s:?}")))
        .collect();
    for name in &names {
        if !strategies.iter().any(|s| format!("{s:?}") == *name) {
            eprintln!(
                "{name:?} is not a strategy this adapter runs (it runs {:?})",
                gpu.strategies()
            );
            std::process::exit(2);
        }
    }
    print!("{:<12} {:>14}", "function", "shape");
    for s in &strategies {
        print!(" {:>16}", format!("{s:?}"));
    }
    println!(" {:>16}", "Auto picks");
    for &(rows, cols) in &shapes {
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 2_654_435_761) % 2001) as f32 * 0.01 - 10.0)
            .collect();
        let input = gpu
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&x),
                usage: wgpu::BufferUsages::STORAGE,
            });
        for func in [RowFn::Logsumexp, RowFn::LogSoftmax] {
            print!(
                "{:<12} {:>14}",
                format!("{func:?}"),
                format!("{rows}x{cols}")
            );
            for &s in &strategies {
                let op = match RowOp::new(&gpu, func, RowsLayout::contiguous(rows, cols), s) {
                    Ok(op) => op,
                    Err(_) => {
                        print!(" {:>16}", "n/a");
                        continue;
                    }
                };
                let output = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: op.output_bytes_needed(),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                });
                // A GPU left idle lowers its clocks: run the kernel for 0.1 s before timing it.
                let warm = Instant::now();
                while warm.elapsed().as_secs_f64() < 0.1 {
                    gpu.kernel_time(&op, &input, &output)?;
                }
                let mut times = Vec::new();
                for _ in 0..6 {
                    let t = Instant::now();
                    let gpu_time = gpu.kernel_time(&op, &input, &output)?;
                    times.push(gpu_time.unwrap_or_else(|| t.elapsed()).as_secs_f64() * 1e3);
                }
                times.remove(0);
                times.sort_by(f64::total_cmp);
                // A vec4 strategy the layout does not allow runs as its scalar form: marked *.
                let mark = if op.strategy() == s { "" } else { "*" };
                print!(" {:>12.3}{mark:1} ms", times[times.len() / 2]);
            }
            let auto = RowOp::new(
                &gpu,
                func,
                RowsLayout::contiguous(rows, cols),
                Strategy::Auto,
            )?;
            println!(" {:>16}", format!("{:?}", auto.strategy()));
        }
    }
    Ok(())
}
