//! Log transforms and the mean of logs on whatever adapter `Gpu::new()` finds: against f64 from
//! the same f32 inputs within bounds written as formulas, special values, strided layouts at
//! unaligned offsets (padding left untouched), a real texture copy with padded rows recorded in
//! the same encoder, a thousand frames with no new buffer, and errors.

mod common;

use common::*;
use logdomain::reference::transform as cpu;
use logdomain::{DataLayout, Error, Gpu, Io, LogFn, LogOp, Op, SENTINEL_BITS};
use wgpu::util::DeviceExt;

fn f(x: f32) -> f64 {
    f64::from(x)
}

fn depth(n: usize) -> f64 {
    let n = n.max(1) as f64;
    n.log2().ceil() + n.log(64.0).ceil() + 1.0
}

/// The f64 truth of `f(x)`.
fn truth(x: f32, func: LogFn) -> f64 {
    let x = f(x);
    match func {
        LogFn::Ln => x.ln(),
        LogFn::Log10 => x.log10(),
        LogFn::Log1p => x.ln_1p(),
    }
}

/// Inputs over the whole range: tiny, subnormal, near 1 and near −1 (for log1p), huge.
fn inputs(rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..4000)
        .map(|_| 10f32.powf(rng.uniform(-37.0, 38.0)))
        .collect();
    x.extend(rng.vec(2000, -0.99, 1.0));
    x.extend([
        1e-40,
        1.0,
        1.0 + 1e-7,
        1e-8,
        -1e-8,
        -0.2929,
        -0.2930,
        0.4142,
        0.4143,
        -0.9999,
    ]);
    x
}

#[test]
fn transforms_are_accurate_and_special_values_follow_ieee() {
    let gpu = gpu();
    let mut rng = Rng(91);
    let x = inputs(&mut rng);
    for func in [LogFn::Ln, LogFn::Log10, LogFn::Log1p] {
        let got = gpu.log_transform(&x, func).unwrap();
        for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
            let want = truth(v, func);
            if want.is_nan() {
                assert!(
                    g.is_nan() && g.to_bits() != SENTINEL_BITS,
                    "{func:?}({v:e}) = {g}"
                );
                continue;
            }
            if want.is_infinite() {
                assert_eq!(f(g), want, "{func:?}({v:e})");
                continue;
            }
            // ln/log1p: the atanh series and the exponent's split constant, 3 ulp of the result
            // plus 2u of ln 2 per binade for ln of large and small values; log10 one rounding
            // more.
            let bound = 4.0 * ulp(want) + 2.0 * U * want.abs();
            assert!(
                g.to_bits() != SENTINEL_BITS && (f(g) - want).abs() <= bound,
                "{func:?}[{i}]({v:e}): got {g:e}, want {want:e} ± {bound:e}"
            );
        }
    }
    let nan = f32::NAN;
    let specials = [0.0, -0.0, -1.0, -2.0, f32::INFINITY, f32::NEG_INFINITY, nan];
    let ln = gpu.log_transform(&specials, LogFn::Ln).unwrap();
    assert_eq!(&ln[..2], &[f32::NEG_INFINITY; 2]);
    assert!(ln[2].is_nan() && ln[3].is_nan() && ln[5].is_nan() && ln[6].is_nan());
    assert_eq!(ln[4], f32::INFINITY);
    let l1p = gpu.log_transform(&specials, LogFn::Log1p).unwrap();
    assert_eq!(
        (l1p[0], l1p[2], l1p[4]),
        (0.0, f32::NEG_INFINITY, f32::INFINITY)
    );
    assert!(l1p[3].is_nan() && l1p[5].is_nan() && l1p[6].is_nan());
    // The CPU mirror agrees within the same bound.
    let cpu = logdomain::reference::transform::transform(&x, LogFn::Log1p);
    let gpu_v = gpu.log_transform(&x, LogFn::Log1p).unwrap();
    for (i, (&a, &b)) in cpu.iter().zip(&gpu_v).enumerate() {
        let want = truth(x[i], LogFn::Log1p);
        let bound = 2.0 * (4.0 * ulp(want) + 2.0 * U * want.abs());
        assert!((f(a) - f(b)).abs() <= bound, "[{i}]: CPU {a} GPU {b}");
    }
}

/// mean of ln(δ + x) within `Σ(4 ulp + 2u|t|)/n + depth(n)·u·Σ|t|/n + u|mean|`.
fn check_mean(got: f32, x: &[f32], delta: f32, what: &str) {
    let terms: Vec<f64> = x.iter().map(|&v| (f(v) + f(delta)).ln()).collect();
    let n = terms.len() as f64;
    let mean = terms.iter().sum::<f64>() / n;
    let abs: f64 = terms.iter().map(|t| t.abs()).sum();
    let per: f64 = terms
        .iter()
        .map(|&t| 4.0 * ulp(t) + 2.0 * U * t.abs())
        .sum();
    let bound = per / n + depth(x.len()) * U * abs / n + U * mean.abs() + U * f(delta);
    assert!(
        (f(got) - mean).abs() <= bound,
        "{what}: got {got:e}, want {mean:e} ± {bound:e}"
    );
}

#[test]
fn mean_of_logs() {
    let gpu = gpu();
    let mut rng = Rng(92);
    for n in [1usize, 64, 1000, 300_001] {
        // An HDR-like range: 1e−3 … 1e2.
        let x: Vec<f32> = (0..n).map(|_| 10f32.powf(rng.uniform(-3.0, 2.0))).collect();
        for delta in [0.0, 1e-4] {
            let got = gpu.mean_log(&x, delta).unwrap();
            check_mean(got, &x, delta, &format!("n {n} delta {delta}"));
        }
    }
    // Zeros: −inf without δ, finite with it.
    assert_eq!(gpu.mean_log(&[1.0, 0.0], 0.0).unwrap(), f32::NEG_INFINITY);
    assert!(gpu.mean_log(&[1.0, 0.0], 1e-4).unwrap().is_finite());
    assert!(gpu.mean_log(&[], 1e-4).unwrap().is_nan());
    assert!(matches!(gpu.mean_log(&[1.0], -1.0), Err(Error::Value(_))));
}

fn storage(gpu: &Gpu, bytes: &[u8]) -> wgpu::Buffer {
    gpu.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        })
}

/// `words` words with the sentinel everywhere but at `layout`'s entries, which take `value()`
/// row by row.
fn strided(layout: &DataLayout, words: usize, mut value: impl FnMut() -> f32) -> Vec<f32> {
    let mut data = vec![f32::from_bits(SENTINEL_BITS); words];
    let lead = (layout.offset_bytes / 4) as usize;
    for r in 0..layout.rows {
        for c in 0..layout.cols {
            data[lead + r * layout.row_stride + c] = value();
        }
    }
    data
}

/// Whether word `i` of a buffer is one of `layout`'s entries.
fn in_layout(layout: &DataLayout, i: usize) -> bool {
    let lead = (layout.offset_bytes / 4) as usize;
    i >= lead
        && i - lead < layout.rows * layout.row_stride
        && (i - lead) % layout.row_stride < layout.cols
}

#[test]
fn strided_layouts_at_unaligned_offsets() {
    let gpu = gpu();
    let mut rng = Rng(93);
    // 37 rows of 70 values, 100 apart, starting 12 bytes in (not a binding alignment).
    let layout = DataLayout {
        offset_bytes: 12,
        rows: 37,
        cols: 70,
        row_stride: 100,
    };
    let words = (layout.extent_bytes() / 4) as usize + 5;
    let mut values = Vec::new();
    let data = strided(&layout, words, || {
        let v = rng.uniform(0.0, 50.0);
        values.push(v);
        v
    });
    let input = storage(gpu, bytemuck::cast_slice(&data));
    let output = storage(gpu, bytemuck::cast_slice(&vec![SENTINEL_BITS; words]));
    let op = LogOp::transform(gpu, LogFn::Log1p, layout).unwrap();
    assert_eq!(op.output_len(), 37 * 70);
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record(&mut encoder, &input, &output).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let got = gpu.read_f32(&output, words as u64 * 4).unwrap();
    for (i, g) in got.iter().enumerate() {
        if in_layout(&layout, i) {
            let want = truth(data[i], LogFn::Log1p);
            assert!(
                (f(*g) - want).abs() <= 4.0 * ulp(want) + 2.0 * U * want.abs(),
                "[{i}]: {g} vs {want}"
            );
        } else {
            assert_eq!(g.to_bits(), SENTINEL_BITS, "padding [{i}] was written");
        }
    }
    let mean = LogOp::mean_log(gpu, 0.0, layout).unwrap();
    let out1 = storage(gpu, bytemuck::cast_slice(&[SENTINEL_BITS]));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    mean.record(&mut encoder, &input, &out1).unwrap();
    gpu.queue().submit([encoder.finish()]);
    check_mean(gpu.read_f32(&out1, 4).unwrap()[0], &values, 0.0, "strided");
    // Errors: an offset that is not a multiple of 4, a stride shorter than a row, a buffer too
    // small for the layout.
    let bad = DataLayout {
        offset_bytes: 6,
        ..layout
    };
    assert!(matches!(
        LogOp::transform(gpu, LogFn::Ln, bad),
        Err(Error::Buffer(_))
    ));
    let bad = DataLayout {
        row_stride: 10,
        ..layout
    };
    assert!(matches!(
        LogOp::mean_log(gpu, 0.0, bad),
        Err(Error::Shape(_))
    ));
    let small = storage(gpu, &[0u8; 64]);
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    assert!(matches!(
        op.record(&mut encoder, &small, &output),
        Err(Error::Buffer(_))
    ));
}

/// A renderer's frame: an R32Float texture copied into a buffer with padded rows, and the mean of
/// logs of its texels, in one encoder; then a thousand frames, with no buffer allocated.
#[test]
fn texture_copy_in_a_frame_and_a_thousand_frames() {
    let (device, queue) = own_device(|_| {});
    let gpu = Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    let (width, height) = (100u32, 50u32);
    let mut rng = Rng(94);
    let texels: Vec<f32> = (0..width * height)
        .map(|_| 10f32.powf(rng.uniform(-4.0, 1.0)))
        .collect();
    let texture = gpu.device().create_texture(&wgpu::TextureDescriptor {
        label: Some("hdr luminance"),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::R32Float,
        usage: wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    gpu.queue().write_texture(
        texture.as_image_copy(),
        bytemuck::cast_slice(&texels),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(width * 4),
            rows_per_image: Some(height),
        },
        texture.size(),
    );
    let bytes_per_row = (width * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    assert!(bytes_per_row > width * 4, "the rows are padded");
    let staging = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("texture copy"),
        size: u64::from(bytes_per_row * height),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let out = storage(&gpu, bytemuck::cast_slice(&[SENTINEL_BITS]));
    let op = LogOp::mean_log(
        &gpu,
        1e-4,
        DataLayout::texture_copy(width, height, bytes_per_row),
    )
    .unwrap();
    let frame = |gpu: &Gpu| {
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        encoder.copy_texture_to_buffer(
            texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &staging,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(bytes_per_row),
                    rows_per_image: Some(height),
                },
            },
            texture.size(),
        );
        op.record(&mut encoder, &staging, &out).unwrap();
        gpu.queue().submit([encoder.finish()]);
    };
    frame(&gpu);
    check_mean(gpu.read_f32(&out, 4).unwrap()[0], &texels, 1e-4, "texture");
    // A mixture's log-density in the same frames (the log_density example's op).
    let gmm = logdomain::Gmm {
        weights: vec![0.5, 0.5],
        means: vec![-1.0, 0.0, 1.0, 0.5],
        covariance: logdomain::Covariance::Diag(vec![1.0, 0.5, 0.3, 2.0]),
    };
    let points = storage(&gpu, bytemuck::cast_slice(&rng.vec(512, -3.0, 3.0)));
    let scores = storage(&gpu, &[0u8; 1024]);
    let gmm_op =
        logdomain::GmmOp::new(&gpu, 256, 2, &gmm, logdomain::GmmOutput::ScoreSamples).unwrap();
    let owned = (op.owned_buffers(), gmm_op.owned_buffers());
    assert!(owned.0 >= 1 && owned.1 >= 1);
    for _ in 0..1000 {
        frame(&gpu);
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        gmm_op.record(&mut encoder, &points, &scores).unwrap();
        gpu.queue().submit([encoder.finish()]);
    }
    gpu.device()
        .poll(wgpu::PollType::wait_indefinitely())
        .unwrap();
    assert_eq!(
        (op.owned_buffers(), gmm_op.owned_buffers()),
        owned,
        "an op made buffers while recording"
    );
    check_mean(
        gpu.read_f32(&out, 4).unwrap()[0],
        &texels,
        1e-4,
        "after 1000 frames",
    );
}

/// The f64 truth of `ln(e^x1 + e^x2)` for finite inputs, and the bound on the f32 result: the
/// kernel rounds `exp(min − max)` and `log1p` (a few ulps each) and the final add (half an ulp
/// of the result), so `6u·(|max| + log1p term) + 2^-126` (a subnormal result may be flushed).
fn logaddexp_truth(x1: f32, x2: f32) -> (f64, f64) {
    let (m, n) = if x1 >= x2 {
        (f(x1), f(x2))
    } else {
        (f(x2), f(x1))
    };
    let l = (n - m).exp().ln_1p();
    (
        m + l,
        6.0 * U * (m.abs() + l) + f64::from(f32::MIN_POSITIVE),
    )
}

/// NumPy's `logaddexp`: its special values (NumPy's own `TestLogAddExp`: `test_inf`,
/// `test_nan`, `test_logaddexp_range`), equal values, huge values of either sign without
/// overflow, and random pairs within the bound; the CPU mirror within the same bound.
#[test]
fn logaddexp_follows_numpy() {
    let gpu = gpu();
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let exact = [
        (inf, inf, inf),
        (-inf, inf, inf),
        (inf, -inf, inf),
        (-inf, -inf, -inf),
        (inf, 1.0, inf),
        (1.0, inf, inf),
        (-inf, 1.0, 1.0),
        (1.0, -inf, 1.0),
        (1_000_000.0, 1_000_200.0, 1_000_200.0),
        (-1_000_000.0, -1_000_200.0, -1_000_000.0),
        (1_000_200.0, 1_000_000.0, 1_000_200.0),
        (3e38, -3e38, 3e38),
        (f32::MAX, f32::MAX, f32::MAX),
        (-f32::MAX, -f32::MAX, -f32::MAX),
    ];
    let nans = [
        (nan, inf),
        (inf, nan),
        (nan, 0.0),
        (0.0, nan),
        (nan, -inf),
        (-inf, nan),
    ];
    let mut rng = Rng(20);
    let mut x1: Vec<f32> = exact.iter().map(|c| c.0).collect();
    let mut x2: Vec<f32> = exact.iter().map(|c| c.1).collect();
    x1.extend(nans.iter().map(|c| c.0));
    x2.extend(nans.iter().map(|c| c.1));
    let first_random = x1.len();
    for _ in 0..3000 {
        x1.push(rng.uniform(-120.0, 120.0));
        x2.push(rng.uniform(-120.0, 120.0));
    }
    for _ in 0..1000 {
        let v = rng.uniform(-1e30, 1e30);
        x1.push(v);
        x2.push(if rng.uniform(0.0, 1.0) < 0.5 { v } else { -v });
    }
    x1.extend([0.0, -0.5, 88.0, -103.0, 1e-30]);
    x2.extend([0.0, -0.5, 88.0, -103.0, -1e-30]);
    let got = gpu.logaddexp(&x1, &x2).unwrap();
    assert_eq!(got.len(), x1.len());
    for (i, &(a, b, want)) in exact.iter().enumerate() {
        assert_eq!(
            got[i].to_bits(),
            want.to_bits(),
            "logaddexp({a}, {b}) = {}",
            got[i]
        );
    }
    for (j, &(a, b)) in nans.iter().enumerate() {
        assert!(got[exact.len() + j].is_nan(), "logaddexp({a}, {b})");
    }
    for i in first_random..x1.len() {
        let (want, bound) = logaddexp_truth(x1[i], x2[i]);
        for (what, v) in [("gpu", got[i]), ("cpu", cpu::logaddexp(x1[i], x2[i]))] {
            assert!(
                (f(v) - want).abs() <= bound,
                "{what} logaddexp({}, {}) = {v}, want {want} ± {bound:e}",
                x1[i],
                x2[i]
            );
        }
    }
    // Symmetric, and empty inputs give an empty result.
    let swapped = gpu.logaddexp(&x2, &x1).unwrap();
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>()[first_random..],
        swapped.iter().map(|v| v.to_bits()).collect::<Vec<_>>()[first_random..]
    );
    assert!(gpu.logaddexp(&[], &[]).unwrap().is_empty());
    assert!(matches!(
        gpu.logaddexp(&[1.0, 2.0], &[1.0]),
        Err(Error::InputLength {
            what: "x2",
            expected: 2,
            actual: 1
        })
    ));
}

/// The encoder-level `logaddexp` on two strided inputs at an unaligned offset, through the
/// `Op` trait: the layout's entries written, the padding left alone; one input is an error.
#[test]
fn logaddexp_at_the_encoder_level() {
    let gpu = gpu();
    let mut rng = Rng(21);
    let layout = DataLayout {
        offset_bytes: 20,
        rows: 23,
        cols: 50,
        row_stride: 64,
    };
    let words = (layout.extent_bytes() / 4) as usize + 3;
    let a = strided(&layout, words, || rng.uniform(-50.0, 50.0));
    let b = strided(&layout, words, || rng.uniform(-50.0, 50.0));
    let (ab, bb) = (
        storage(gpu, bytemuck::cast_slice(&a)),
        storage(gpu, bytemuck::cast_slice(&b)),
    );
    let out = storage(gpu, bytemuck::cast_slice(&vec![SENTINEL_BITS; words]));
    let op = LogOp::logaddexp(gpu, layout).unwrap();
    assert_eq!(op.input_names().len(), 2);
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record_io(
        &mut encoder,
        Io {
            inputs: &[&ab, &bb],
            outputs: &[&out],
        },
    )
    .unwrap();
    gpu.queue().submit([encoder.finish()]);
    let got = gpu.read_f32(&out, words as u64 * 4).unwrap();
    for (i, g) in got.iter().enumerate() {
        if in_layout(&layout, i) {
            let (want, bound) = logaddexp_truth(a[i], b[i]);
            assert!((f(*g) - want).abs() <= bound, "[{i}]: {g} vs {want}");
        } else {
            assert_eq!(g.to_bits(), SENTINEL_BITS, "padding [{i}] was written");
        }
    }
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    assert!(matches!(
        op.record(&mut encoder, &ab, &out),
        Err(Error::Buffer(_))
    ));
}
