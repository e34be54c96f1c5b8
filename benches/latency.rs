//! Small batches: the end-to-end time of a 1 × 1000 log-sum-exp through the blocking API
//! against a bare wgpu round trip on the same adapter — one dispatch of one workgroup (the read
//! probe over one word) and a 4-byte copy into a reused mappable buffer in one submission, then
//! map, read, unmap. The ratio is what the blocking path adds (upload, bind groups, readback).
//!
//! `WGPU_BACKEND=vulkan cargo bench --bench latency` (and `gl`); prints medians of 200 calls.

use std::time::{Duration, Instant};

use logdomain::{Gpu, ReadProbe};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let gpu = Gpu::new().expect("an adapter");
    println!("adapter: {}", gpu.info());
    let calls = 200;
    // The bare round trip.
    let probe = ReadProbe::new(&gpu, 1).expect("probe");
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let input = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 4,
        usage,
        mapped_at_creation: false,
    });
    let output = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 4,
        usage,
        mapped_at_creation: false,
    });
    let staging = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bare_trip = || {
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        probe.record(&mut encoder, &input, &output).expect("record");
        encoder.copy_buffer_to_buffer(&output, 0, &staging, 0, 4);
        gpu.queue().submit([encoder.finish()]);
        let slice = staging.slice(..);
        slice.map_async(wgpu::MapMode::Read, |r| r.expect("map"));
        gpu.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("poll");
        std::hint::black_box(slice.get_mapped_range().expect("mapped")[0]);
        staging.unmap();
    };
    // 1 × 1000 through the blocking call, interleaved with the bare trips: GL drivers settle
    // into a fast or a slow mode for a while (about 40 or 110 µs a trip on llvmpipe), and calls
    // taken in turn see the same mode, where two series taken one after the other need not.
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
    let mut bare = Vec::with_capacity(calls);
    let mut lse = Vec::with_capacity(calls);
    for i in 0..=calls {
        let t = Instant::now();
        bare_trip();
        let b = t.elapsed();
        let t = Instant::now();
        std::hint::black_box(gpu.logsumexp(&x, 1, 1000).expect("logsumexp"));
        let l = t.elapsed();
        if i > 0 {
            bare.push(b);
            lse.push(l);
        }
    }
    let (b, l) = (median(bare), median(lse));
    println!(
        "bare round trip (1 dispatch, 4-byte readback): {:.1} µs; logsumexp 1x1000 blocking: \
         {:.1} µs; ratio {:.2} (medians of {calls})",
        b.as_secs_f64() * 1e6,
        l.as_secs_f64() * 1e6,
        l.as_secs_f64() / b.as_secs_f64()
    );
}
