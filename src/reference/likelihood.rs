//! CPU mirror of `shaders/likelihood.wgsl`: the same per-element functions and the same
//! pairwise summation order (chunks of [`CHUNK`] values, then [`CHUNK`] partials at a time), in
//! f32. IEEE f32 arithmetic gives the special values the kernels spell out from bits.
//!
//! These are test oracles and CPU baselines: inputs are assumed valid (the GPU ops check them),
//! and mismatched lengths or out-of-range targets panic.

use super::logsumexp::{RowFn, ld_exp_neg, ld_exp_reduced, ld_log, ld_log1p};

/// How per-sample values are reduced over the batch, as PyTorch's `reduction` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// One value per sample (per element for the element-wise losses).
    None,
    /// The sum over the batch: one value.
    Sum,
    /// The mean over the batch: one value. Cross-entropy and NLL divide by the summed class
    /// weights of the non-ignored targets (NaN when every target is ignored), the element-wise
    /// losses by the number of elements (NaN for an empty batch).
    #[default]
    Mean,
}

/// Options of `F.cross_entropy` / `F.nll_loss` with class-index targets (PyTorch's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropy {
    /// A weight per class (`classes` values, finite), or `None` for 1.
    pub weight: Option<Vec<f32>>,
    /// Targets equal to this contribute nothing, to the loss nor to the mean's denominator.
    pub ignore_index: i64,
    /// In `[0, 1]`: the target distribution is `(1 − ε)·onehot + ε/C`. Must be 0 for NLL.
    pub label_smoothing: f32,
    /// The reduction over rows.
    pub reduction: Reduction,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy {
            weight: None,
            ignore_index: -100,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
        }
    }
}

/// Options of `F.gaussian_nll_loss` (PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianNll {
    /// Add the constant `0.5·ln(2π)` per element.
    pub full: bool,
    /// Variances are clamped to at least `eps` (finite, ≥ 0).
    pub eps: f32,
    /// The reduction over elements.
    pub reduction: Reduction,
}

impl Default for GaussianNll {
    fn default() -> Self {
        GaussianNll {
            full: false,
            eps: 1e-6,
            reduction: Reduction::Mean,
        }
    }
}

/// Options of `F.binary_cross_entropy_with_logits` (PyTorch's defaults).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bce {
    /// A weight of the positive class per column (`cols` values, broadcast over rows as
    /// PyTorch broadcasts over the last dimension), or `None` for 1.
    pub pos_weight: Option<Vec<f32>>,
    /// The reduction over elements.
    pub reduction: Reduction,
}

/// Options of `F.poisson_nll_loss` (PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoissonNll {
    /// Inputs are log-rates (`e^x − y·x`) rather than rates (`x − y·ln(x + eps)`).
    pub log_input: bool,
    /// Add the Stirling approximation of `ln(y!)` where `y > 1`.
    pub full: bool,
    /// Added to rates before the log when `log_input` is false.
    pub eps: f32,
    /// The reduction over elements.
    pub reduction: Reduction,
}

impl Default for PoissonNll {
    fn default() -> Self {
        PoissonNll {
            log_input: true,
            full: false,
            eps: 1e-8,
            reduction: Reduction::Mean,
        }
    }
}

/// Values per chunk and partials per reduction step.
pub const CHUNK: usize = 64;

/// A partial sum: the finite values' sum, the weights' sum, and the special values seen. A sum
/// that reaches 2^64 is carried scaled by 2^-64 from then on ([`SUM_BIG_S`], [`SUM_BIG_W`]), so
/// that a sum of finite values does not overflow midway.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SumState {
    /// Sum of the finite values.
    pub s: f32,
    /// Sum of the weights (what a weighted mean divides by).
    pub w: f32,
    /// [`SUM_NAN`], [`SUM_POS_INF`], [`SUM_NEG_INF`], [`SUM_BIG_S`], [`SUM_BIG_W`].
    pub flags: u32,
}

/// A NaN was summed.
pub const SUM_NAN: u32 = 1;
/// A +inf was summed.
pub const SUM_POS_INF: u32 = 2;
/// A −inf was summed.
pub const SUM_NEG_INF: u32 = 4;
/// `s` holds the sum times 2^-64.
pub const SUM_BIG_S: u32 = 8;
/// `w` holds the summed weights times 2^-64.
pub const SUM_BIG_W: u32 = 16;
const TWO_POW_64: f32 = 18_446_744_073_709_551_616.0;
pub(crate) const TWO_POW_M64: f32 = 1.0 / TWO_POW_64;
/// 64 ln 2, the log of 2^64 (`LN_TWO_POW_64` in `shaders/common.wgsl`).
pub const LN_TWO_POW_64: f32 = 44.361_42;

/// The empty sum.
pub fn sum_identity() -> SumState {
    SumState::default()
}

/// Adds value `v` with weight `w`.
pub fn sum_push(st: SumState, v: f32, w: f32) -> SumState {
    if v.is_finite() {
        return SumState {
            s: st.s + v,
            w: st.w + w,
            flags: st.flags,
        };
    }
    let f = if v.is_nan() {
        SUM_NAN
    } else if v > 0.0 {
        SUM_POS_INF
    } else {
        SUM_NEG_INF
    };
    SumState {
        s: st.s,
        w: st.w + w,
        flags: st.flags | f,
    }
}

/// `x + y` of two sums, each scaled by 2^-64 where flagged; scaled (and flagged) once either is
/// scaled or reaches 2^64.
fn scaled_add(x: f32, xb: bool, y: f32, yb: bool) -> (f32, bool) {
    if !xb && !yb && x.abs() < TWO_POW_64 && y.abs() < TWO_POW_64 {
        return (x + y, false);
    }
    let xs = if xb { x } else { x * TWO_POW_M64 };
    let ys = if yb { y } else { y * TWO_POW_M64 };
    (xs + ys, true)
}

/// Merges two partial sums.
pub fn sum_combine(a: SumState, b: SumState) -> SumState {
    let big = |st: SumState, f: u32| st.flags & f != 0;
    let (s, bs) = scaled_add(a.s, big(a, SUM_BIG_S), b.s, big(b, SUM_BIG_S));
    let (w, bw) = scaled_add(a.w, big(a, SUM_BIG_W), b.w, big(b, SUM_BIG_W));
    let flags = (a.flags | b.flags) & !(SUM_BIG_S | SUM_BIG_W);
    SumState {
        s,
        w,
        flags: flags | if bs { SUM_BIG_S } else { 0 } | if bw { SUM_BIG_W } else { 0 },
    }
}

/// `v · 2^(64 e)`, `e` in {−1, 0, 1}, for a finite `v`: ±inf where it exceeds f32.
fn scale(v: f32, e: i32) -> f32 {
    match e {
        0 => v,
        e if e < 0 => v * TWO_POW_M64,
        _ if v.abs() >= TWO_POW_64 => f32::INFINITY.copysign(v),
        _ => v * TWO_POW_64,
    }
}

fn big_s(st: SumState) -> i32 {
    i32::from(st.flags & SUM_BIG_S != 0)
}

fn big_w(st: SumState) -> i32 {
    i32::from(st.flags & SUM_BIG_W != 0)
}

/// The summed weights.
pub fn sum_weight(st: SumState) -> f32 {
    scale(st.w, big_w(st))
}

/// The mean of a sum of `n` values, computed on the scaled sum (the `reduce` kernel's
/// `FINISH_MEAN_COUNT`).
pub fn sum_mean(st: SumState, n: f32) -> f32 {
    sum_ratio(st, n, 0)
}

/// The total divided by `d` and by 2^(64 e), computed on the scaled sum (the kernels'
/// `sum_ratio_bits`).
fn sum_ratio(st: SumState, d: f32, e: i32) -> f32 {
    if st.flags & (SUM_NAN | SUM_POS_INF | SUM_NEG_INF) != 0 {
        return sum_total(st) / d;
    }
    let q = st.s / d;
    if !q.is_finite() {
        return q;
    }
    scale(q, big_s(st) - e)
}

/// The total: NaN if a NaN or both infinities were summed, else the infinity seen, else `s`.
pub fn sum_total(st: SumState) -> f32 {
    if st.flags & SUM_NAN != 0
        || st.flags & (SUM_POS_INF | SUM_NEG_INF) == SUM_POS_INF | SUM_NEG_INF
    {
        f32::NAN
    } else if st.flags & SUM_POS_INF != 0 {
        f32::INFINITY
    } else if st.flags & SUM_NEG_INF != 0 {
        f32::NEG_INFINITY
    } else {
        scale(st.s, big_s(st))
    }
}

/// Pairwise sum of states in the kernels' order: a binary counter of partial sums.
pub fn pairwise(states: impl IntoIterator<Item = SumState>) -> SumState {
    let mut stack: Vec<SumState> = Vec::new();
    for (i, st0) in states.into_iter().enumerate() {
        let mut st = st0;
        let mut c = i + 1;
        while c & 1 == 0 {
            st = sum_combine(stack.pop().expect("binary counter"), st);
            c >>= 1;
        }
        stack.push(st);
    }
    stack
        .into_iter()
        .rev()
        .fold(sum_identity(), |total, st| sum_combine(st, total))
}

/// Reduces per-row partial sums level by level, [`CHUNK`] at a time, as the `reduce` kernel.
pub fn reduce_levels(mut partials: Vec<SumState>) -> SumState {
    loop {
        if partials.len() <= CHUNK {
            return pairwise(partials);
        }
        partials = partials
            .chunks(CHUNK)
            .map(|c| pairwise(c.iter().copied()))
            .collect();
    }
}

/// Chunk sums of values (weights 0) as the `elementwise` kernel forms them along one row.
pub fn chunk_partials(values: &[f32]) -> Vec<SumState> {
    values
        .chunks(CHUNK)
        .map(|c| pairwise(c.iter().map(|&v| sum_push(sum_identity(), v, 0.0))))
        .collect()
}

fn finish(st: SumState, reduction: Reduction, divisor: Option<f32>) -> f32 {
    match (reduction, divisor) {
        (Reduction::Mean, Some(n)) => sum_ratio(st, n, 0),
        (Reduction::Mean, None) => sum_ratio(st, st.w, big_w(st)),
        _ => sum_total(st),
    }
}

fn reduce_values(values: Vec<f32>, reduction: Reduction) -> Vec<f32> {
    if reduction == Reduction::None {
        return values;
    }
    let n = values.len() as f32;
    vec![finish(
        reduce_levels(chunk_partials(&values)),
        reduction,
        Some(n),
    )]
}

/// `ln(1 + e^z)` for finite z.
pub fn softplus(z: f32) -> f32 {
    z.max(0.0) + ld_log1p(ld_exp_neg(-z.abs()))
}

/// `ln x` as the kernels take it: NaN below 0, −inf at 0, subnormals exact.
pub fn xlog(v: f32) -> f32 {
    if v.is_nan() || v < 0.0 {
        f32::NAN
    } else if v == 0.0 {
        f32::NEG_INFINITY
    } else if v == f32::INFINITY {
        f32::INFINITY
    } else if v < f32::MIN_POSITIVE {
        ld_log(v.to_bits() as f32) - 149.0 * 0.693_145_75 - 149.0 * 1.428_606_8e-6
    } else {
        ld_log(v)
    }
}

/// `e^x` as the kernels take it.
pub fn xexp(x: f32) -> f32 {
    if x.is_nan() {
        f32::NAN
    } else if x <= 0.0 {
        if x == f32::NEG_INFINITY {
            0.0
        } else {
            ld_exp_neg(x)
        }
    } else if x > 88.722_84 {
        f32::INFINITY
    } else {
        let k = (x * std::f32::consts::LOG2_E).round_ties_even();
        let p = ld_exp_reduced(x, k);
        let v = p * f32::from_bits(((k as i32 + 126) as u32) << 23) * 2.0;
        if v > f32::MAX { f32::INFINITY } else { v }
    }
}

/// One element of `F.gaussian_nll_loss`.
pub fn gaussian_nll_element(x: f32, y: f32, var: f32, eps: f32, full: bool) -> f32 {
    if var.is_nan() || var < 0.0 {
        return f32::NAN;
    }
    let v = if var.is_finite() { var.max(eps) } else { var };
    let d = x - y;
    let mut loss = xlog(v) + d * d / v;
    if full {
        loss += 2.0 * 0.918_938_5;
    }
    0.5 * loss
}

/// One element of `F.binary_cross_entropy_with_logits` (stable form for finite operands).
pub fn bce_element(x: f32, y: f32, pw: f32) -> f32 {
    if x.is_finite() && y.is_finite() && pw.is_finite() {
        return (1.0 - y) * softplus(x) + (pw * y) * softplus(-x);
    }
    let log_sig = if x.is_finite() {
        -softplus(-x)
    } else if x == f32::INFINITY {
        0.0
    } else if x == f32::NEG_INFINITY {
        f32::NEG_INFINITY
    } else {
        f32::NAN
    };
    let lw = 1.0 + (pw - 1.0) * y;
    (1.0 - y) * x - log_sig * lw
}

/// One element of `F.poisson_nll_loss`.
pub fn poisson_nll_element(x: f32, y: f32, log_input: bool, full: bool, eps: f32) -> f32 {
    let mut loss = if log_input {
        xexp(x) - y * x
    } else {
        x - y * xlog(x + eps)
    };
    if full && y > 1.0 {
        loss += (y * xlog(y) - y) + 0.5 * xlog(std::f32::consts::TAU * y);
    }
    loss
}

/// `F.gaussian_nll_loss` (var of length n or 1).
pub fn gaussian_nll(input: &[f32], target: &[f32], var: &[f32], o: &GaussianNll) -> Vec<f32> {
    let v = |i: usize| if var.len() == 1 { var[0] } else { var[i] };
    let values = (0..input.len())
        .map(|i| gaussian_nll_element(input[i], target[i], v(i), o.eps, o.full))
        .collect();
    reduce_values(values, o.reduction)
}

/// `F.binary_cross_entropy_with_logits` over `rows × cols` (chunks along rows, as the kernel).
pub fn binary_cross_entropy_with_logits(
    logits: &[f32],
    targets: &[f32],
    rows: usize,
    cols: usize,
    o: &Bce,
) -> Vec<f32> {
    let pw = |c: usize| o.pos_weight.as_ref().map_or(1.0, |p| p[c]);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| bce_element(logits[i], targets[i], pw(i % cols)))
        .collect();
    if o.reduction == Reduction::None {
        return values;
    }
    let partials = values
        .chunks(cols.max(1))
        .flat_map(chunk_partials)
        .collect();
    vec![finish(
        reduce_levels(partials),
        o.reduction,
        Some((rows * cols) as f32),
    )]
}

/// `F.poisson_nll_loss`.
pub fn poisson_nll(input: &[f32], target: &[f32], o: &PoissonNll) -> Vec<f32> {
    let values = input
        .iter()
        .zip(target)
        .map(|(&x, &y)| poisson_nll_element(x, y, o.log_input, o.full, o.eps))
        .collect();
    reduce_values(values, o.reduction)
}

/// `Σ ln p` per row.
pub fn log_prod(p: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows)
        .map(|r| {
            let lnp: Vec<f32> = p[r * cols..(r + 1) * cols]
                .iter()
                .map(|&v| xlog(v))
                .collect();
            sum_total(reduce_levels(chunk_partials(&lnp)))
        })
        .collect()
}

/// `F.cross_entropy` (`nll = false`, from logits) or `F.nll_loss` (`nll = true`, from
/// log-probabilities) with class-index targets; targets must be valid (checked by the caller).
pub fn categorical(
    x: &[f32],
    rows: usize,
    classes: usize,
    targets: &[i64],
    o: &CrossEntropy,
    nll: bool,
) -> Vec<f32> {
    categorical_nd(x, &[rows, classes], targets, o, nll, 0)
}

/// [`categorical`] on PyTorch's class axis 1 of an input of `shape` (C,), (N, C) or
/// (N, C, d1, …, dk), row-major, as the GPU reads it: each position's log-sum-exp parts from
/// [`super::logsumexp::reduce_axes`] over axis 1 (`seg_len` as the op's
/// `AxisOp::segment_len`), its classes `d1 ⋯ dk` entries apart. The losses in the targets'
/// row-major order, or one value.
pub fn categorical_nd(
    x: &[f32],
    shape: &[usize],
    targets: &[i64],
    o: &CrossEntropy,
    nll: bool,
    seg_len: usize,
) -> Vec<f32> {
    let (n, classes, inner) = class_dims(shape);
    let rows = n * inner;
    let parts = if nll {
        vec![(0.0, 0.0); rows]
    } else {
        class_parts(x, n, classes, inner, seg_len)
    };
    let eps = f64::from(o.label_smoothing);
    let keep = (1.0 - eps) as f32;
    let per_class = (eps / classes.max(1) as f64) as f32;
    let w = |c: usize| o.weight.as_ref().map_or(1.0, |w| w[c]);
    let mut states = Vec::with_capacity(rows);
    for (r, &t) in targets.iter().enumerate().take(rows) {
        if t == o.ignore_index {
            states.push(SumState::default());
            continue;
        }
        let row: Vec<f32> = (0..classes)
            .map(|c| x[class_entry(r, c, classes, inner)])
            .collect();
        let t = t as usize;
        let (hi, lo) = parts[r];
        let nll_t = if nll { -row[t] } else { (hi - row[t]) + lo };
        let mut loss = w(t) * nll_t;
        if eps > 0.0 {
            let terms: Vec<f32> = (0..classes)
                .map(|c| {
                    if hi.is_finite() {
                        w(c) * ((hi - row[c]) + lo)
                    } else {
                        f32::NAN
                    }
                })
                .collect();
            let smooth = sum_total(reduce_levels(chunk_partials(&terms)));
            loss = keep * loss + per_class * smooth;
        }
        states.push(SumState {
            w: w(t),
            ..sum_push(sum_identity(), loss, 0.0)
        });
    }
    match o.reduction {
        Reduction::None => states.iter().map(|s| sum_total(*s)).collect(),
        r => vec![finish(reduce_levels(states), r, None)],
    }
}

/// `F.cross_entropy` with class-probability targets of an input of `shape` (as
/// [`categorical_nd`] reads it; the targets laid out as the logits), as the GPU computes it: per
/// row the terms `((hi − x_c) + lo)·t'_c·w_c` summed as the label-smoothing sums are, each row
/// counting 1 in a mean.
pub fn cross_entropy_probs(
    x: &[f32],
    shape: &[usize],
    targets: &[f32],
    o: &CrossEntropy,
    seg_len: usize,
) -> Vec<f32> {
    let (n, classes, inner) = class_dims(shape);
    let rows = n * inner;
    let at = |r: usize, c: usize| class_entry(r, c, classes, inner);
    let parts = class_parts(x, n, classes, inner, seg_len);
    let eps = f64::from(o.label_smoothing);
    let keep = (1.0 - eps) as f32;
    let per_class = (eps / classes.max(1) as f64) as f32;
    let w = |c: usize| o.weight.as_ref().map_or(1.0, |w| w[c]);
    let states: Vec<SumState> = (0..rows)
        .map(|r| {
            let (hi, lo) = parts[r];
            let terms: Vec<f32> = (0..classes)
                .map(|c| {
                    if !hi.is_finite() {
                        return f32::NAN;
                    }
                    let t = targets[at(r, c)];
                    let t = if eps > 0.0 { t * keep + per_class } else { t };
                    ((hi - x[at(r, c)]) + lo) * t * w(c)
                })
                .collect();
            let loss = sum_total(reduce_levels(chunk_partials(&terms)));
            SumState {
                w: 1.0,
                ..sum_push(sum_identity(), loss, 0.0)
            }
        })
        .collect();
    match o.reduction {
        Reduction::None => states.iter().map(|s| sum_total(*s)).collect(),
        Reduction::Sum => vec![sum_total(reduce_levels(states))],
        Reduction::Mean => vec![sum_mean(reduce_levels(states), rows as f32)],
    }
}

/// Where class `c` of categorical row `r` lies (the kernels' `class_entry`): row r = n·inner + p
/// is position p of sample n, its classes `inner` entries apart.
fn class_entry(r: usize, c: usize, classes: usize, inner: usize) -> usize {
    (r / inner) * classes * inner + r % inner + c * inner
}

/// Each row's log-sum-exp parts `(hi, lo)` as the kernels get them, `(NaN, 0)` where they are not
/// finite: `RowFn::LogsumexpParts` of packed rows (`inner` = 1), else the N-d op over axis 1 of
/// (n, classes, inner) in segments of `seg_len`.
fn class_parts(
    x: &[f32],
    n: usize,
    classes: usize,
    inner: usize,
    seg_len: usize,
) -> Vec<(f32, f32)> {
    use super::logsumexp::{FLAG_NAN, FLAG_NONEMPTY, FLAG_POS_INF, row_state};
    let rows = n * inner;
    if inner == 1 {
        return (0..rows)
            .map(|r| {
                let st = row_state(&x[r * classes..(r + 1) * classes]);
                if st.flags & (FLAG_NAN | FLAG_POS_INF) != 0 || st.flags & FLAG_NONEMPTY == 0 {
                    (f32::NAN, 0.0)
                } else {
                    (st.m, ld_log1p(st.s))
                }
            })
            .collect();
    }
    if rows * classes == 0 {
        return vec![(f32::NAN, 0.0); rows];
    }
    let both = super::logsumexp::reduce_axes(
        RowFn::LogsumexpParts,
        x,
        &[n, classes, inner],
        &[classes * inner, inner, 1],
        &[false, true, false],
        seg_len,
    );
    (0..rows)
        .map(|r| {
            let (hi, lo) = (both[r], both[rows + r]);
            if hi.is_finite() {
                (hi, lo)
            } else {
                (f32::NAN, 0.0)
            }
        })
        .collect()
}

/// PyTorch's class axis of a categorical input of `shape` ((C,), (N, C) or (N, C, d1, …, dk)):
/// (samples, classes, positions a sample).
///
/// # Panics
/// For a 0-d shape (the reference is a test oracle).
fn class_dims(shape: &[usize]) -> (usize, usize, usize) {
    match shape {
        [c] => (1, *c, 1),
        [n, c, rest @ ..] => (*n, *c, rest.iter().product()),
        [] => panic!("reference: a categorical input has a class axis"),
    }
}
