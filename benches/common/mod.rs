//! Helpers shared by the likelihood and gradient benches: an input generator, buffers, a
//! criterion group with this project's settings, and the resident / kernel timings of a
//! recorded op.
#![allow(dead_code)]

use std::time::Duration;

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use logdomain::Gpu;
use wgpu::util::DeviceExt;

pub struct Gen(pub u64);

impl Gen {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.next()).collect()
    }
}

pub fn buffer(gpu: &Gpu, bytes: &[u8]) -> wgpu::Buffer {
    gpu.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE,
        })
}

pub fn out_buffer(gpu: &Gpu, values: usize) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (values.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

pub fn group<'a>(c: &'a mut Criterion, name: &str, bytes: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(bytes));
    g
}

/// Resident and kernel timings of a recorded op.
pub fn gpu_benches(
    g: &mut BenchmarkGroup<'_, WallTime>,
    gpu: &Gpu,
    id: &str,
    shape: &str,
    record: &dyn Fn(&mut wgpu::CommandEncoder),
    kernel: &dyn Fn() -> Option<Duration>,
) {
    g.bench_function(BenchmarkId::new(format!("{id}gpu_resident"), shape), |b| {
        b.iter(|| {
            let mut encoder = gpu.device().create_command_encoder(&Default::default());
            record(&mut encoder);
            gpu.queue().submit([encoder.finish()]);
            gpu.device()
                .poll(wgpu::PollType::wait_indefinitely())
                .unwrap();
        })
    });
    if kernel().is_some() {
        g.bench_function(BenchmarkId::new(format!("{id}gpu_kernel"), shape), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| kernel().unwrap()).sum())
        });
    }
}
