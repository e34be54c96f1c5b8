//! Shared test setup: the adapter, an f64 oracle computed from the same f32 inputs, the accuracy
//! bounds of the contract written as formulas, and a deterministic input generator.
#![allow(dead_code)]

use std::sync::OnceLock;

use logdomain::{Gpu, RowFn, RowOp, RowsLayout, SENTINEL_BITS, Strategy};
use wgpu::util::DeviceExt;

/// The unit roundoff of f32.
pub const U: f64 = 1.0 / (1u64 << 24) as f64;

/// The adapter `Gpu::new()` finds, its blocking calls filling outputs with the sentinel in
/// every build. No adapter is a failure with the actionable message, never a skip.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(g) => {
            eprintln!("adapter: {}", g.info());
            g.fill_outputs_with_sentinel(true);
            g
        }
        Err(e) => panic!("{e}"),
    })
}

/// SplitMix64: reproducible inputs without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let t = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * t
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// The f64 truth for one row, from its f32 entries, with SciPy ≥ 1.15 semantics.
pub struct Truth {
    pub lse: f64,
    pub softmax: Vec<f64>,
    pub log_softmax: Vec<f64>,
    /// max over finite entries (NaN if none)
    pub max: f64,
    /// Σ_j w_j |x_j − max| with w_j = softmax_j: the shifted-exponential error term of
    /// Blanchard, Higham & Higham (2021), which matters only for wide dynamic ranges.
    pub shift_term: f64,
}

/// A row whose special values decide everything: softmax all NaN, no finite max.
fn special(lse: f64, log_softmax: Vec<f64>) -> Truth {
    let n = log_softmax.len();
    Truth {
        lse,
        softmax: vec![f64::NAN; n],
        log_softmax,
        max: f64::NAN,
        shift_term: 0.0,
    }
}

pub fn truth(row: &[f32]) -> Truth {
    let x: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
    let n = x.len();
    if x.iter().any(|v| v.is_nan()) {
        return special(f64::NAN, vec![f64::NAN; n]);
    }
    if x.contains(&f64::INFINITY) {
        let lsm = x.iter().map(|&v| {
            if v == f64::INFINITY {
                f64::NAN
            } else {
                f64::NEG_INFINITY
            }
        });
        return special(f64::INFINITY, lsm.collect());
    }
    let finite: Vec<usize> = (0..n).filter(|&j| x[j].is_finite()).collect();
    if finite.is_empty() {
        return special(f64::NEG_INFINITY, vec![f64::NAN; n]);
    }
    let (arg, max) = finite.iter().fold((finite[0], x[finite[0]]), |(a, m), &j| {
        if x[j] > m { (j, x[j]) } else { (a, m) }
    });
    let s: f64 = finite
        .iter()
        .filter(|&&j| j != arg)
        .map(|&j| (x[j] - max).exp())
        .sum();
    let l1p = s.ln_1p();
    let softmax: Vec<f64> = x
        .iter()
        .map(|&v| {
            if v == f64::NEG_INFINITY {
                0.0
            } else {
                (v - max).exp() / (1.0 + s)
            }
        })
        .collect();
    let log_softmax = x
        .iter()
        .map(|&v| {
            if v == f64::NEG_INFINITY {
                f64::NEG_INFINITY
            } else {
                (v - max) - l1p
            }
        })
        .collect();
    let shift_term = finite
        .iter()
        .map(|&j| softmax[j] * (x[j] - max).abs())
        .sum();
    Truth {
        lse: max + l1p,
        softmax,
        log_softmax,
        max,
        shift_term,
    }
}

/// One f32 ulp at the magnitude of `v`.
pub fn ulp(v: f64) -> f64 {
    let a = v.abs().max(f64::from(f32::MIN_POSITIVE));
    2f64.powi(a.log2().floor() as i32 - 23)
}

/// Same special value (NaN, ±inf) or, for finite values, within `bound`.
fn close(got: f32, want: f64, bound: f64) -> bool {
    if want.is_nan() {
        return got.is_nan() && got.to_bits() != SENTINEL_BITS;
    }
    if want.is_infinite() {
        return f64::from(got) == want;
    }
    got.is_finite() && (f64::from(got) - want).abs() <= bound
}

/// The contract for log-sum-exp: 8 ulp of the f64 result, or 4e-6 absolute where |lse| < 1,
/// plus the shifted-exponential term u · Σ w_j |x_j − max| (at most u · 200 for |x| ≤ 100).
pub fn lse_bound(t: &Truth) -> f64 {
    let base = if t.lse.abs() < 1.0 {
        4e-6f64.max(8.0 * ulp(t.lse))
    } else {
        8.0 * ulp(t.lse)
    };
    base + U * t.shift_term
}

/// The f64 truth of every row of a row-major `rows × cols` matrix: compute it once and check
/// several results against it (`check_with`).
pub fn truths(x: &[f32], rows: usize, cols: usize) -> Vec<Truth> {
    (0..rows)
        .map(|r| truth(&x[r * cols..(r + 1) * cols]))
        .collect()
}

pub fn check_lse(got: &[f32], x: &[f32], rows: usize, cols: usize, what: &str) {
    check_lse_with(got, &truths(x, rows, cols), what)
}

fn check_lse_with(got: &[f32], truths: &[Truth], what: &str) {
    let rows = truths.len();
    assert_eq!(got.len(), rows, "{what}: logsumexp length");
    for (r, t) in truths.iter().enumerate() {
        let bound = lse_bound(t);
        assert!(
            close(got[r], t.lse, bound),
            "{what}: logsumexp row {r}: got {} (bits {:#x}), want {} ± {bound:e}",
            got[r],
            got[r].to_bits(),
            t.lse
        );
    }
}

pub fn check_log_softmax(got: &[f32], x: &[f32], rows: usize, cols: usize, what: &str) {
    check_log_softmax_with(got, x, rows, cols, &truths(x, rows, cols), what)
}

fn check_log_softmax_with(
    got: &[f32],
    x: &[f32],
    rows: usize,
    cols: usize,
    truths: &[Truth],
    what: &str,
) {
    assert_eq!(got.len(), rows * cols, "{what}: log_softmax length");
    for (r, t) in truths.iter().enumerate() {
        let row = &x[r * cols..(r + 1) * cols];
        let lb = lse_bound(t);
        for j in 0..cols {
            let (g, w) = (got[r * cols + j], t.log_softmax[j]);
            // lse's bound plus u · (|x_j − max| + |out_j|).
            let bound = lb + U * ((f64::from(row[j]) - t.max).abs() + w.abs());
            assert!(
                close(g, w, bound),
                "{what}: log_softmax [{r},{j}] x={}: got {g} (bits {:#x}), want {w} ± {bound:e}",
                row[j],
                g.to_bits()
            );
        }
    }
}

pub fn check_softmax(got: &[f32], x: &[f32], rows: usize, cols: usize, what: &str) {
    check_softmax_with(got, x, rows, cols, &truths(x, rows, cols), what)
}

fn check_softmax_with(
    got: &[f32],
    x: &[f32],
    rows: usize,
    cols: usize,
    truths: &[Truth],
    what: &str,
) {
    assert_eq!(got.len(), rows * cols, "{what}: softmax length");
    let log2n = (cols.max(2) as f64).log2().ceil();
    for (r, t) in truths.iter().enumerate() {
        let row = &x[r * cols..(r + 1) * cols];
        for j in 0..cols {
            let (g, p) = (got[r * cols + j], t.softmax[j]);
            // (⌈log2 n⌉ + 18) · u · p_j + 2^-126, plus the terms of Blanchard, Higham & Higham's
            // analysis for the rounding of the shifted arguments: u · |x_j − max| · p_j (the
            // rounding of x_j − max itself, which no f32 evaluation avoids) and u · Σ_i w_i |x_i − max|
            // (the same roundings inside the sum).
            let shift_j = if p > 0.0 {
                (f64::from(row[j]) - t.max).abs()
            } else {
                0.0
            };
            let bound = (log2n + 18.0 + shift_j + t.shift_term) * U * p + 2f64.powi(-126);
            assert!(
                close(g, p, bound),
                "{what}: softmax [{r},{j}] x={}: got {g} (bits {:#x}), want {p} ± {bound:e}",
                row[j],
                g.to_bits()
            );
        }
    }
}

pub fn check(func: RowFn, got: &[f32], x: &[f32], rows: usize, cols: usize, what: &str) {
    check_with(func, got, x, rows, cols, &truths(x, rows, cols), what)
}

/// `check` against the rows' truths computed once (`truths(x, rows, cols)`).
pub fn check_with(
    func: RowFn,
    got: &[f32],
    x: &[f32],
    rows: usize,
    cols: usize,
    truths: &[Truth],
    what: &str,
) {
    assert_eq!(truths.len(), rows, "{what}: one truth per row");
    match func {
        RowFn::Logsumexp => check_lse_with(got, truths, what),
        RowFn::Softmax => check_softmax_with(got, x, rows, cols, truths, what),
        RowFn::LogSoftmax => check_log_softmax_with(got, x, rows, cols, truths, what),
        RowFn::LogsumexpParts => check_parts_with(got, truths, what),
    }
}

/// The parts (m, log1p(s)): m is the row's largest finite entry exactly, and m + log1p(s) meets
/// the log-sum-exp contract; special rows give (NaN, 0), (+inf, 0), (−inf, 0).
pub fn check_parts(got: &[f32], x: &[f32], rows: usize, cols: usize, what: &str) {
    check_parts_with(got, &truths(x, rows, cols), what)
}

fn check_parts_with(got: &[f32], truths: &[Truth], what: &str) {
    let rows = truths.len();
    assert_eq!(got.len(), 2 * rows, "{what}: length");
    for (r, t) in truths.iter().enumerate() {
        let (hi, lo) = (got[2 * r], got[2 * r + 1]);
        if !t.lse.is_finite() {
            assert!(
                close(hi, t.lse, 0.0) && lo == 0.0,
                "{what}: row {r} parts ({hi}, {lo}), lse {}",
                t.lse
            );
            continue;
        }
        assert_eq!(f64::from(hi), t.max, "{what}: row {r} max");
        let lo_want = t.lse - t.max;
        assert!(
            close(lo, lo_want, lse_bound(t)),
            "{what}: row {r} log1p(s) {lo} vs {lo_want}"
        );
    }
}

pub const FUNCS: [RowFn; 4] = [
    RowFn::Logsumexp,
    RowFn::Softmax,
    RowFn::LogSoftmax,
    RowFn::LogsumexpParts,
];

/// `Auto` and every explicit strategy this adapter can run.
pub fn strategies(gpu: &Gpu) -> Vec<Strategy> {
    let mut s = vec![Strategy::Auto];
    s.extend(gpu.strategies());
    s
}

/// Whether `strategy` must refuse rows of `cols` entries: no invocation walks more than 16,384
/// entries (llvmpipe ends loops after 65,535 iterations per invocation).
pub fn lane_limit_applies(gpu: &Gpu, strategy: Strategy, cols: usize) -> bool {
    match strategy {
        Strategy::ThreadPerRow => cols > 16_384,
        // A word (four entries) a step where it reads vec4 words, else ThreadPerRow.
        Strategy::ThreadVec4 if cols.is_multiple_of(4) => cols / 4 > 16_384,
        Strategy::ThreadVec4 => cols > 16_384,
        Strategy::SubgroupPerRow | Strategy::SubgroupVec4 => {
            cols.div_ceil(gpu.info().subgroup_sizes.0 as usize) > 16_384
        }
        _ => false,
    }
}

/// Runs one op through the encoder-level API on a dense matrix, with the output first filled
/// with the sentinel; returns the output.
pub fn run_op(
    gpu: &Gpu,
    func: RowFn,
    x: &[f32],
    rows: usize,
    cols: usize,
    strategy: Strategy,
) -> Vec<f32> {
    try_run_op(gpu, func, x, rows, cols, strategy)
        .unwrap_or_else(|e| panic!("{func:?} {strategy:?}: {e}"))
}

/// As `run_op`, but returns the error of `RowOp::new`.
pub fn try_run_op(
    gpu: &Gpu,
    func: RowFn,
    x: &[f32],
    rows: usize,
    cols: usize,
    strategy: Strategy,
) -> Result<Vec<f32>, logdomain::Error> {
    let layout = RowsLayout::contiguous(rows, cols);
    let op = RowOp::new(gpu, func, layout, strategy)?;
    let device = gpu.device();
    let input = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: if x.is_empty() {
            &[0u8; 4]
        } else {
            bytemuck::cast_slice(x)
        },
        usage: wgpu::BufferUsages::STORAGE,
    });
    let out_bytes = (func.output_len(rows, cols) * 4) as u64;
    let output = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: out_bytes.max(4),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    op.record_sentinel_fill(&mut encoder, &output).unwrap();
    op.record(&mut encoder, &input, &output).unwrap();
    gpu.queue().submit([encoder.finish()]);
    Ok(gpu.read_f32(&output, out_bytes).unwrap())
}

/// A device of this adapter with 64 KiB storage bindings and 16 workgroups per grid dimension:
/// ops are windowed, split across bindings and dispatched on 2-D grids.
pub fn small_gpu() -> Gpu {
    let (device, queue) = own_device(|l| {
        l.max_storage_buffer_binding_size = 64 * 1024;
        l.max_compute_workgroups_per_dimension = 16;
    });
    Gpu::from_device(device, queue)
}

/// A device the test creates itself (as a renderer would), on the adapter `WGPU_BACKEND`
/// selects, with the adapter's limits adjusted by `adjust` and its subgroup feature if any.
pub fn own_device(adjust: impl FnOnce(&mut wgpu::Limits)) -> (wgpu::Device, wgpu::Queue) {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap_or_else(|e| {
                panic!("no adapter ({e}): install mesa-vulkan-drivers or use WGPU_BACKEND=gl")
            });
    let mut limits = adapter.limits();
    adjust(&mut limits);
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("test-owned"),
        required_features: adapter.features() & wgpu::Features::SUBGROUP,
        required_limits: limits,
        ..Default::default()
    }))
    .expect("device")
}
