//! The bandwidth probe reads every word exactly once: its partials are the CPU mirror's.

mod common;

use common::*;
use logdomain::{ReadProbe, SENTINEL_BITS, reference::bandwidth as cpu};
use wgpu::util::DeviceExt;

/// `probe` recorded into an encoder of ours on `x`, its output sentinel-filled first: the output
/// words.
fn recorded_output(gpu: &logdomain::Gpu, probe: &ReadProbe, x: &[u32]) -> Vec<u32> {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let init = |contents: &[u8]| {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents,
                usage,
            })
    };
    let input = init(bytemuck::cast_slice(x));
    let output = init(bytemuck::cast_slice(&vec![
        SENTINEL_BITS;
        probe.output_len()
    ]));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    probe.record(&mut encoder, &input, &output).unwrap();
    gpu.queue().submit([encoder.finish()]);
    gpu.read_f32(&output, probe.output_len() as u64 * 4)
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn the_probe_reads_every_word_once() {
    let gpu = gpu();
    let mut rng = Rng(5);
    for words in [0usize, 1, 1000, (1 << 18) + 5, 3_000_001] {
        let x: Vec<u32> = (0..words).map(|_| rng.next_u64() as u32).collect();
        assert_eq!(
            gpu.read_probe(&x).unwrap(),
            cpu::read_sum(&x),
            "{words} words"
        );
        let probe = ReadProbe::new(gpu, words).unwrap();
        if words == 0 {
            assert_eq!(probe.output_len(), 0);
            continue;
        }
        let got = recorded_output(gpu, &probe, &x);
        for (t, v) in got.iter().enumerate() {
            let want = if probe.in_runs() {
                cpu::read_probe_run_partial(&x, 1, t, probe.output_len())[0]
            } else {
                cpu::read_probe_partial(&x, t, probe.output_len())
            };
            assert_eq!(*v, want, "{words} words, invocation {t}");
        }
    }
}

#[test]
fn the_copy_probe_copies_every_word_once() {
    let gpu = gpu();
    let mut rng = Rng(6);
    for words in [0usize, 1, 1000, (1 << 18) + 5, 3_000_001] {
        let x: Vec<u32> = (0..words).map(|_| rng.next_u64() as u32).collect();
        // The blocking call fills the output with the sentinel first in debug builds (these
        // tests): a word the kernel skipped would show as SENTINEL_BITS.
        let got = gpu.copy_probe(&x).unwrap();
        assert_eq!(got.len(), words);
        assert!(got == x, "{words} words copied");
        assert_eq!(ReadProbe::copy(gpu, words).unwrap().output_len(), words);
    }
}

#[test]
fn the_vec4_probes_read_and_copy_every_word_once() {
    let gpu = gpu();
    let mut rng = Rng(7);
    // Fewer vec4 words than invocations, exactly one step of UNROLL, and ragged ends.
    for words in [0usize, 4, 1000, 4 << 18, (16 << 18) + 20, 3_000_004] {
        let x: Vec<u32> = (0..words).map(|_| rng.next_u64() as u32).collect();
        assert_eq!(
            gpu.read_probe_vec4(&x).unwrap(),
            cpu::read_sum(&x),
            "{words} words"
        );
        let got = gpu.copy_probe_vec4(&x).unwrap();
        assert!(got == x, "{words} words copied");
        let probe = ReadProbe::read_vec4(gpu, words).unwrap();
        if words == 0 {
            assert_eq!(probe.output_len(), 0);
            continue;
        }
        let got = recorded_output(gpu, &probe, &x);
        let invocations = probe.output_len() / 4;
        for t in 0..invocations {
            let want = if probe.in_runs() {
                let p = cpu::read_probe_run_partial(&x, 4, t, invocations);
                [p[0], p[1], p[2], p[3]]
            } else {
                cpu::read_probe_vec4_partial(&x, t, invocations)
            };
            for c in 0..4 {
                assert_eq!(
                    got[4 * t + c],
                    want[c],
                    "{words} words, invocation {t}, component {c}"
                );
            }
        }
    }
    for words in [1usize, 6, 1001] {
        assert!(
            matches!(
                ReadProbe::read_vec4(gpu, words),
                Err(logdomain::Error::Shape(_))
            ),
            "{words} words"
        );
        assert!(
            gpu.copy_probe_vec4(&vec![0; words]).is_err(),
            "{words} words"
        );
    }
}
