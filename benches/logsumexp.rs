//! Criterion benches of the log-sum-exp family at the shapes:
//! the GPU kernel by timestamp queries (`gpu_kernel`, where the adapter has them), the GPU with
//! data resident by wall clock (`gpu_resident`: record, submit, wait), GPU end to end through the
//! blocking API (upload, run, read back), and the single-threaded CPU reference. Throughput is
//! the bytes the op must move (input read plus output written).
//!
//! `cargo bench --bench logsumexp` (on the adapter `WGPU_BACKEND` selects). Filter with criterion's
//! usual argument, e.g. `cargo bench --bench logsumexp -- 4096x4096`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use logdomain::{Gpu, RowFn, RowOp, RowsLayout, Strategy, reference::logsumexp as cpu};
use wgpu::util::DeviceExt;

const SHAPES: [(usize, usize); 4] = [(4096, 4096), (65_536, 256), (256, 65_536), (1_048_576, 16)];

fn input(n: usize) -> Vec<f32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("adapter: {}", gpu.info());
    let device = gpu.device();
    for (rows, cols) in SHAPES {
        let x = input(rows * cols);
        let buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&x),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let shape = format!("{rows}x{cols}");
        for func in [RowFn::Logsumexp, RowFn::LogSoftmax, RowFn::Softmax] {
            let name = match func {
                RowFn::Logsumexp => "logsumexp",
                RowFn::Softmax => "softmax",
                RowFn::LogSoftmax => "log_softmax",
                RowFn::LogsumexpParts => "logsumexp_parts",
            };
            let mut group = c.benchmark_group(name);
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
            group.throughput(Throughput::Bytes(
                ((x.len() + func.output_len(rows, cols)) * 4) as u64,
            ));
            let op = RowOp::new(
                &gpu,
                func,
                RowsLayout::contiguous(rows, cols),
                Strategy::Auto,
            )
            .unwrap();
            let out = device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: op.output_bytes_needed(),
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            group.bench_function(
                BenchmarkId::new(format!("gpu_resident_{:?}", op.strategy()), &shape),
                |b| {
                    b.iter(|| {
                        let mut encoder = device.create_command_encoder(&Default::default());
                        op.record(&mut encoder, &buffer, &out).unwrap();
                        gpu.queue().submit([encoder.finish()]);
                        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
                    })
                },
            );
            if gpu.kernel_time(&op, &buffer, &out).unwrap().is_some() {
                group.bench_function(BenchmarkId::new("gpu_kernel", &shape), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| gpu.kernel_time(&op, &buffer, &out).unwrap().unwrap())
                            .sum()
                    })
                });
            }
            group.bench_function(BenchmarkId::new("gpu_end_to_end", &shape), |b| {
                b.iter(|| match func {
                    RowFn::Logsumexp => gpu.logsumexp(&x, rows, cols).unwrap(),
                    RowFn::Softmax => gpu.softmax(&x, rows, cols).unwrap(),
                    RowFn::LogSoftmax => gpu.log_softmax(&x, rows, cols).unwrap(),
                    RowFn::LogsumexpParts => gpu.logsumexp_parts(&x, rows, cols).unwrap(),
                })
            });
            group.bench_function(BenchmarkId::new("cpu_reference", &shape), |b| {
                b.iter(|| match func {
                    RowFn::Logsumexp => cpu::logsumexp(&x, rows, cols),
                    RowFn::Softmax => cpu::softmax(&x, rows, cols),
                    RowFn::LogSoftmax => cpu::log_softmax(&x, rows, cols),
                    RowFn::LogsumexpParts => cpu::logsumexp_parts(&x, rows, cols),
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
