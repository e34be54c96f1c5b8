//! CPU mirror of `shaders/common.wgsl` and `shaders/logsumexp.wgsl`.
//!
//! The log-sum-exp monoid: an [`LseState`] summarises a set of values as (m, s, flags) with
//! m the largest finite value, s the sum of `exp(x - m)` over the finite values other than one
//! instance of m, and flags recording whether a finite value, a NaN or a +inf was seen (-inf
//! entries are absent). log-sum-exp = `m + log1p(s)`. States merge with [`lse_combine`], so a row
//! split across lanes, workgroups, dispatches or devices gives the same answer up to rounding.
//!
//! ```
//! use logdomain::reference::logsumexp::{lse_combine, lse_identity, lse_push, lse_result};
//! let left = [0.0f32, 1.0].iter().fold(lse_identity(), |st, &x| lse_push(st, x));
//! let right = [2.0f32].iter().fold(lse_identity(), |st, &x| lse_push(st, x));
//! let lse = lse_result(lse_combine(left, right));
//! assert!((lse - 2.4076059).abs() < 1e-6);
//! ```

/// Which function of the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowFn {
    /// `log Σ_j exp(x_rj)`: one value per row.
    Logsumexp,
    /// `exp(x_rj) / Σ_k exp(x_rk)`: one value per entry.
    Softmax,
    /// `x_rj − logsumexp_r`: one value per entry.
    LogSoftmax,
    /// The log-sum-exp in two parts, two values per row: `(m, log1p(s))` with `m` the row's
    /// largest entry and `logsumexp = m + log1p(s)`, so that `x_j − logsumexp` can be taken as
    /// `(x_j − m) − log1p(s)` without the rounding of the sum (cross-entropy uses it). A row
    /// with a NaN gives `(NaN, 0)`, with a +inf `(+inf, 0)`, with only −inf entries `(−inf, 0)`.
    LogsumexpParts,
}

impl RowFn {
    /// Whether it writes a fixed number of values per row (a reduction) rather than one per
    /// entry.
    pub fn reduces(self) -> bool {
        matches!(self, RowFn::Logsumexp | RowFn::LogsumexpParts)
    }

    /// Values written per row by a reduction (1 or 2).
    pub(crate) fn reduced_width(self) -> u64 {
        if self == RowFn::LogsumexpParts { 2 } else { 1 }
    }

    /// Number of f32 outputs for a `rows × cols` input.
    pub fn output_len(self, rows: usize, cols: usize) -> usize {
        match self {
            RowFn::Logsumexp => rows,
            RowFn::LogsumexpParts => rows * 2,
            _ => rows * cols,
        }
    }
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
const SQRT_TWO_MINUS_ONE: f32 = 0.414_213_57;
const EXP_ARG_MIN: f32 = -104.0;

/// A finite value was seen.
pub const FLAG_NONEMPTY: u32 = 1;
/// A NaN was seen.
pub const FLAG_NAN: u32 = 2;
/// A +inf was seen.
pub const FLAG_POS_INF: u32 = 4;

/// `e^d` for `d <= 0`, as the kernels compute it (Cody-Waite reduction and a degree-7
/// polynomial scaled by `2^k` built from its bits; about 1 ulp). Results below `2^-126` flush
/// to zero.
pub fn ld_exp_neg(d: f32) -> f32 {
    let x = d.max(EXP_ARG_MIN);
    let k = (x * LOG2E).round_ties_even();
    ld_exp_reduced(x, k) * f32::from_bits(((k as i32 + 127).max(0) as u32) << 23)
}

/// `e^(x − k ln 2)` for `k = round(x / ln 2)`: the Cody-Waite reduction and degree-7
/// polynomial shared by the kernels' `exp`s.
pub fn ld_exp_reduced(x: f32, k: f32) -> f32 {
    let r = (x - k * LN2_HI) - k * LN2_LO;
    1.0 + r
        * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668
                        + r * (0.008_333_334 + r * (0.001_388_888_9 + r * 0.000_198_412_7))))))
}

/// `2 atanh(f)` for `|f| <= 0.1716`.
fn ld_atanh2(f: f32) -> f32 {
    let f2 = f * f;
    f * (2.0
        + f2 * (0.666_666_7
            + f2 * (0.4 + f2 * (0.285_714_3 + f2 * (0.222_222_22 + f2 * 0.181_818_19)))))
}

/// `ln y` for finite, positive, normal `y`, as the kernels compute it.
pub fn ld_log(y: f32) -> f32 {
    // frexp: y = fract * 2^exp with fract in [0.5, 1).
    let bits = y.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let mut m = f32::from_bits((bits & 0x807f_ffff) | (126 << 23));
    if m < SQRT_HALF {
        m *= 2.0;
        e -= 1;
    }
    let ef = e as f32;
    ef * LN2_HI + (ld_atanh2((m - 1.0) / (m + 1.0)) + ef * LN2_LO)
}

/// `ln(1 + s)` for `s >= 0`, as the kernels compute it.
pub fn ld_log1p(s: f32) -> f32 {
    if s < SQRT_TWO_MINUS_ONE {
        ld_atanh2(s / (2.0 + s))
    } else {
        ld_log(1.0 + s)
    }
}

/// The monoid's state; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LseState {
    pub m: f32,
    pub s: f32,
    pub flags: u32,
}

impl LseState {
    /// The empty set (log-sum-exp −inf): the identity of [`LseState::combine`].
    pub const EMPTY: LseState = LseState {
        m: 0.0,
        s: 0.0,
        flags: 0,
    };

    /// The state of the union of two disjoint sets (see [`lse_combine`]).
    pub fn combine(self, other: LseState) -> LseState {
        lse_combine(self, other)
    }

    /// The log-sum-exp of the set (see [`lse_result`]).
    pub fn logsumexp(self) -> f32 {
        lse_result(self)
    }

    /// The state behind a row's parts `(m, log1p(s))` (`RowFn::LogsumexpParts`): `(NaN, 0)`,
    /// `(+inf, 0)` and `(−inf, 0)` are a NaN, a +inf and an empty row; otherwise `s` is
    /// recovered as `expm1` of the second part, in f64.
    pub fn from_parts(hi: f32, lo: f32) -> LseState {
        if hi.is_nan() {
            LseState {
                flags: FLAG_NAN,
                ..LseState::EMPTY
            }
        } else if hi == f32::INFINITY {
            LseState {
                flags: FLAG_POS_INF,
                ..LseState::EMPTY
            }
        } else if hi == f32::NEG_INFINITY {
            LseState::EMPTY
        } else {
            LseState {
                m: hi,
                s: f64::from(lo).exp_m1() as f32,
                flags: FLAG_NONEMPTY,
            }
        }
    }
}

/// The empty set: log-sum-exp −inf.
pub fn lse_identity() -> LseState {
    LseState {
        m: 0.0,
        s: 0.0,
        flags: 0,
    }
}

/// Adds one value.
pub fn lse_push(st: LseState, x: f32) -> LseState {
    if x.is_nan() {
        return LseState {
            flags: st.flags | FLAG_NAN,
            ..st
        };
    }
    if x.is_infinite() {
        if x > 0.0 {
            return LseState {
                flags: st.flags | FLAG_POS_INF,
                ..st
            };
        }
        return st;
    }
    if st.flags & FLAG_NONEMPTY == 0 {
        return LseState {
            m: x,
            s: 0.0,
            flags: st.flags | FLAG_NONEMPTY,
        };
    }
    let e = ld_exp_neg(-(x - st.m).abs());
    if x > st.m {
        LseState {
            m: x,
            s: (st.s + 1.0) * e,
            flags: st.flags,
        }
    } else {
        LseState {
            m: st.m,
            s: st.s + e,
            flags: st.flags,
        }
    }
}

/// Merges two states; commutative bit for bit.
pub fn lse_combine(a: LseState, b: LseState) -> LseState {
    let flags = a.flags | b.flags;
    if a.flags & FLAG_NONEMPTY == 0 {
        return LseState { flags, ..b };
    }
    if b.flags & FLAG_NONEMPTY == 0 {
        return LseState { flags, ..a };
    }
    if a.m > b.m {
        LseState {
            m: a.m,
            s: a.s + ld_exp_neg(b.m - a.m) * (1.0 + b.s),
            flags,
        }
    } else if b.m > a.m {
        LseState {
            m: b.m,
            s: b.s + ld_exp_neg(a.m - b.m) * (1.0 + a.s),
            flags,
        }
    } else {
        LseState {
            m: a.m,
            s: (a.s + b.s) + 1.0,
            flags,
        }
    }
}

/// The log-sum-exp of the summarised set (SciPy >= 1.15 semantics).
pub fn lse_result(st: LseState) -> f32 {
    if st.flags & FLAG_NAN != 0 {
        f32::NAN
    } else if st.flags & FLAG_POS_INF != 0 {
        f32::INFINITY
    } else if st.flags & FLAG_NONEMPTY == 0 {
        f32::NEG_INFINITY
    } else {
        st.m + ld_log1p(st.s)
    }
}

/// log_softmax of entry `x` of the row summarised by `st`, with `l1p = ld_log1p(st.s)`.
pub fn log_softmax_entry(st: LseState, l1p: f32, x: f32) -> f32 {
    if st.flags & FLAG_NAN != 0 {
        f32::NAN
    } else if st.flags & FLAG_POS_INF != 0 {
        if x == f32::INFINITY {
            f32::NAN
        } else {
            f32::NEG_INFINITY
        }
    } else if st.flags & FLAG_NONEMPTY == 0 {
        f32::NAN
    } else if x == f32::NEG_INFINITY {
        f32::NEG_INFINITY
    } else {
        (x - st.m) - l1p
    }
}

/// softmax of entry `x` of the row summarised by `st`, with `denom = 1 + st.s` (division form).
pub fn softmax_entry(st: LseState, denom: f32, x: f32) -> f32 {
    if st.flags & (FLAG_NAN | FLAG_POS_INF) != 0 || st.flags & FLAG_NONEMPTY == 0 {
        f32::NAN
    } else if x == f32::NEG_INFINITY {
        0.0
    } else {
        ld_exp_neg(x - st.m) / denom
    }
}

/// Entries per block of [`range_state`].
pub const BLOCK: usize = 64;

/// The state of `values[first..end]` taken every `step`-th entry, as one kernel lane computes
/// it: blocks of [`BLOCK`] entries pushed in order, blocks merged pairwise by a binary counter
/// (rounding grows with `BLOCK + log2(blocks)`, not with the length).
pub fn range_state(values: &[f32], first: usize, end: usize, step: usize) -> LseState {
    let mut stack: Vec<LseState> = Vec::new();
    let mut blocks = 0u64;
    let mut j0 = first;
    while j0 < end {
        let mut st = lse_identity();
        for j in (j0..end).step_by(step).take(BLOCK) {
            st = lse_push(st, values[j]);
        }
        blocks += 1;
        let mut c = blocks;
        while c & 1 == 0 {
            st = lse_combine(stack.pop().expect("binary counter"), st);
            c >>= 1;
        }
        stack.push(st);
        j0 += BLOCK * step;
    }
    stack
        .iter()
        .rev()
        .fold(lse_identity(), |total, &st| lse_combine(st, total))
}

/// The state of one row, as a one-invocation-per-row kernel computes it.
pub fn row_state(row: &[f32]) -> LseState {
    range_state(row, 0, row.len(), 1)
}

fn check(len: usize, rows: usize, cols: usize) {
    assert_eq!(
        Some(len),
        rows.checked_mul(cols),
        "reference: x.len() must be rows * cols"
    );
}

/// Row-wise log-sum-exp of a row-major `rows × cols` matrix (one value per row).
///
/// # Panics
/// If `x.len() != rows * cols` (the reference is a test oracle; the GPU API returns errors).
pub fn logsumexp(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    check(x.len(), rows, cols);
    if cols == 0 {
        return vec![f32::NEG_INFINITY; rows];
    }
    x.chunks_exact(cols)
        .map(|row| lse_result(row_state(row)))
        .collect()
}

/// The parts `(m, log1p(s))` of each row's log-sum-exp (two values per row; `(NaN, 0)`,
/// `(+inf, 0)` and `(−inf, 0)` for rows with a NaN, a +inf, or only −inf entries).
///
/// # Panics
/// If `x.len() != rows * cols`.
pub fn logsumexp_parts(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    check(x.len(), rows, cols);
    let mut out = Vec::with_capacity(2 * rows);
    for r in 0..rows {
        let st = row_state(&x[r * cols..(r + 1) * cols]);
        if st.flags & (FLAG_NAN | FLAG_POS_INF) != 0 || st.flags & FLAG_NONEMPTY == 0 {
            out.extend([lse_result(st), 0.0]);
        } else {
            out.extend([st.m, ld_log1p(st.s)]);
        }
    }
    out
}

/// Row-wise softmax (same shape as `x`).
///
/// # Panics
/// If `x.len() != rows * cols`.
pub fn softmax(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    check(x.len(), rows, cols);
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(cols.max(1)) {
        let st = row_state(row);
        let denom = 1.0 + st.s;
        out.extend(row.iter().map(|&v| softmax_entry(st, denom, v)));
    }
    out
}

/// Row-wise log_softmax (same shape as `x`).
///
/// # Panics
/// If `x.len() != rows * cols`.
pub fn log_softmax(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    check(x.len(), rows, cols);
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(cols.max(1)) {
        let st = row_state(row);
        let l1p = ld_log1p(st.s);
        out.extend(row.iter().map(|&v| log_softmax_entry(st, l1p, v)));
    }
    out
}

/// The state of a result's entries `values`, in walk order, as the N-d kernels compute it:
/// segments of `seg_len` entries (one for `seg_len == 0`), each a [`range_state`], combined left
/// to right.
pub fn segmented_state(values: &[f32], seg_len: usize) -> LseState {
    let seg_len = if seg_len == 0 { values.len() } else { seg_len };
    values
        .chunks(seg_len.max(1))
        .map(|seg| range_state(seg, 0, seg.len(), 1))
        .reduce(lse_combine)
        .unwrap_or_else(lse_identity)
}

/// Row-major (C-order) strides of `shape`, in entries.
fn c_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![0usize; shape.len()];
    let mut acc = 1;
    for d in (0..shape.len()).rev() {
        s[d] = acc;
        acc *= shape[d].max(1);
    }
    s
}

/// Row-major multi-indices of `shape`, in order.
fn indices(shape: &[usize]) -> impl Iterator<Item = Vec<usize>> + '_ {
    let total: usize = shape.iter().product();
    (0..total).map(move |mut v| {
        let mut idx = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            idx[d] = v % shape[d];
            v /= shape[d];
        }
        idx
    })
}

/// `func` over the dimensions `mask` marks of the array whose entry `(i0, i1, …)` is
/// `x[Σ i_d · strides[d]]`: each result's entries walked in the row-major order of the reduced
/// indices, `seg_len` entries a segment ([`segmented_state`]). The results in row-major order
/// of the kept dimensions (logsumexp; the parts as every result's m, then every result's
/// log1p(s), as [`logsumexp_parts`] gives them for a row), or of the whole shape (softmax,
/// log_softmax).
///
/// # Panics
/// If the shapes disagree or an index falls outside `x` (the reference is a test oracle).
pub fn reduce_axes(
    func: RowFn,
    x: &[f32],
    shape: &[usize],
    strides: &[usize],
    mask: &[bool],
    seg_len: usize,
) -> Vec<f32> {
    assert!(shape.len() == strides.len() && shape.len() == mask.len());
    let kept: Vec<usize> = (0..shape.len()).filter(|&d| !mask[d]).collect();
    let red: Vec<usize> = (0..shape.len()).filter(|&d| mask[d]).collect();
    let kept_shape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let red_shape: Vec<usize> = red.iter().map(|&d| shape[d]).collect();
    let total: usize = shape.iter().product();
    let mut out = vec![
        0.0f32;
        if func.reduces() {
            kept_shape.iter().product::<usize>() * func.reduced_width() as usize
        } else {
            total
        }
    ];
    let dense = c_strides(shape);
    for (p, ki) in indices(&kept_shape).enumerate() {
        let at = |ri: &[usize], s: &[usize]| -> usize {
            kept.iter().zip(&ki).map(|(&d, &i)| i * s[d]).sum::<usize>()
                + red.iter().zip(ri).map(|(&d, &i)| i * s[d]).sum::<usize>()
        };
        let places: Vec<(usize, usize)> = indices(&red_shape)
            .map(|ri| (at(&ri, strides), at(&ri, &dense)))
            .collect();
        let values: Vec<f32> = places.iter().map(|&(i, _)| x[i]).collect();
        let st = segmented_state(&values, seg_len);
        match func {
            RowFn::Logsumexp => out[p] = lse_result(st),
            RowFn::LogsumexpParts => {
                let n = out.len() / 2;
                if st.flags & (FLAG_NAN | FLAG_POS_INF) != 0 || st.flags & FLAG_NONEMPTY == 0 {
                    (out[p], out[n + p]) = (lse_result(st), 0.0);
                } else {
                    (out[p], out[n + p]) = (st.m, ld_log1p(st.s));
                }
            }
            RowFn::Softmax => {
                let denom = 1.0 + st.s;
                for (&(_, o), &v) in places.iter().zip(&values) {
                    out[o] = softmax_entry(st, denom, v);
                }
            }
            _ => {
                let l1p = ld_log1p(st.s);
                for (&(_, o), &v) in places.iter().zip(&values) {
                    out[o] = log_softmax_entry(st, l1p, v);
                }
            }
        }
    }
    out
}

/// [`reduce_axes`] over the entries where `present` (row-major over `shape`) is true, as the
/// N-d kernels' `where=`: a masked entry is walked as −inf, and written as 0 (softmax) or −inf
/// (log_softmax).
///
/// # Panics
/// As [`reduce_axes`], and if `present` is not one flag per entry.
pub fn reduce_axes_masked(
    func: RowFn,
    x: &[f32],
    shape: &[usize],
    strides: &[usize],
    present: &[bool],
    reduced: &[bool],
    seg_len: usize,
) -> Vec<f32> {
    let total: usize = shape.iter().product();
    assert_eq!(present.len(), total, "reference: one mask flag per entry");
    let dense: Vec<f32> = indices(shape)
        .zip(present)
        .map(|(idx, &p)| {
            if p {
                x[idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>()]
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let mut out = reduce_axes(func, &dense, shape, &c_strides(shape), reduced, seg_len);
    if !func.reduces() {
        let fill = if func == RowFn::Softmax {
            0.0
        } else {
            f32::NEG_INFINITY
        };
        for (o, &p) in out.iter_mut().zip(present) {
            if !p {
                *o = fill;
            }
        }
    }
    out
}

/// The sum of terms as the N-d kernels' sum walks (weighted, backward) take a segment:
/// [`range_state`]'s blocks and binary counter with the sum monoid.
pub fn range_sum(terms: &[super::likelihood::SumState]) -> super::likelihood::SumState {
    use super::likelihood::{sum_combine, sum_identity};
    let block = |b: &[super::likelihood::SumState]| {
        b.iter().fold(sum_identity(), |st, &t| sum_combine(st, t))
    };
    if terms.len() <= BLOCK {
        return block(terms);
    }
    let mut stack = Vec::new();
    for (i, b) in terms.chunks(BLOCK).enumerate() {
        let mut st = block(b);
        // The binary counter: blocks so far = i + 1.
        let mut c = i + 1;
        while c & 1 == 0 {
            st = sum_combine(stack.pop().expect("binary counter"), st);
            c >>= 1;
        }
        stack.push(st);
    }
    stack
        .iter()
        .rev()
        .fold(sum_identity(), |total, &st| sum_combine(st, total))
}

/// SciPy's `logsumexp(x, axis, b=b, return_sign=True)` as the N-d kernels compute it: `b` one
/// weight per entry, row-major over `shape` (broadcasts expanded); the logs and the signs in
/// row-major order of the kept dimensions. The max comes from a walk of `x` with the zero-weighted
/// entries at −inf ([`segmented_state`]); the signed terms (`reference::weighted::signed_term`)
/// are summed in segments of `seg_len` ([`range_sum`] each, then left to right).
///
/// # Panics
/// As [`reduce_axes`], and if `b` is not one weight per entry.
pub fn reduce_axes_weighted(
    x: &[f32],
    shape: &[usize],
    strides: &[usize],
    b: &[f32],
    reduced: &[bool],
    seg_len: usize,
) -> (Vec<f32>, Vec<f32>) {
    let kept: Vec<usize> = (0..shape.len()).filter(|&d| !reduced[d]).collect();
    let red: Vec<usize> = (0..shape.len()).filter(|&d| reduced[d]).collect();
    let ks: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let rs: Vec<usize> = red.iter().map(|&d| shape[d]).collect();
    let dense = c_strides(shape);
    assert_eq!(
        b.len(),
        shape.iter().product::<usize>(),
        "reference: one weight per entry"
    );
    let (mut logs, mut signs) = (Vec::new(), Vec::new());
    let red_idx: Vec<Vec<usize>> = indices(&rs).collect();
    for ki in indices(&ks) {
        let at = |ri: &[usize], s: &[usize]| -> usize {
            kept.iter().zip(&ki).map(|(&d, &i)| i * s[d]).sum::<usize>()
                + red.iter().zip(ri).map(|(&d, &i)| i * s[d]).sum::<usize>()
        };
        let xs: Vec<f32> = red_idx.iter().map(|ri| x[at(ri, strides)]).collect();
        let ws: Vec<f32> = red_idx.iter().map(|ri| b[at(ri, &dense)]).collect();
        let walked: Vec<f32> = xs
            .iter()
            .zip(&ws)
            .map(|(&v, &w)| if w == 0.0 { f32::NEG_INFINITY } else { v })
            .collect();
        let st = segmented_state(&walked, seg_len);
        let hi = lse_result(st);
        let m = if hi.is_finite() { st.m } else { hi };
        let terms: Vec<super::likelihood::SumState> = xs
            .iter()
            .zip(&ws)
            .map(|(&v, &w)| super::weighted::signed_term(v, w, m))
            .collect();
        let len = if seg_len == 0 { terms.len() } else { seg_len };
        let sum = terms
            .chunks(len.max(1))
            .map(range_sum)
            .reduce(super::likelihood::sum_combine)
            .unwrap_or_else(super::likelihood::sum_identity);
        let (l, s) = super::weighted::weighted_result(m, sum);
        logs.push(l);
        signs.push(s);
    }
    (logs, signs)
}

/// The backward of [`reduce_axes`]'s `func` over `reduced`, as the N-d kernels compute it: `y`
/// the forward's input (logsumexp) or output (softmax, log_softmax) at `strides`, `g` the
/// upstream gradient row-major over the output's shape (`shape`, or the results for logsumexp,
/// whose forward values `lse` are then one per result); softmax's `Σ g p` and log_softmax's `Σ g`
/// summed in the walk order, each value a sum of one ([`range_sum`]), in segments of `seg_len`
/// combined left to right. `dx` row-major over `shape`.
///
/// # Panics
/// As [`reduce_axes`].
#[allow(clippy::too_many_arguments)]
pub fn reduce_axes_backward(
    func: RowFn,
    y: &[f32],
    shape: &[usize],
    strides: &[usize],
    g: &[f32],
    lse: &[f32],
    reduced: &[bool],
    seg_len: usize,
) -> Vec<f32> {
    use super::gradients::{
        log_softmax_backward_entry, lse_backward_entry, softmax_backward_entry,
    };
    use super::likelihood::{SumState, sum_combine, sum_identity, sum_push, sum_total};
    let kept: Vec<usize> = (0..shape.len()).filter(|&d| !reduced[d]).collect();
    let red: Vec<usize> = (0..shape.len()).filter(|&d| reduced[d]).collect();
    let ks: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let rs: Vec<usize> = red.iter().map(|&d| shape[d]).collect();
    let dense = c_strides(shape);
    let mut out = vec![0.0f32; shape.iter().product()];
    let red_idx: Vec<Vec<usize>> = indices(&rs).collect();
    for (p, ki) in indices(&ks).enumerate() {
        let at = |ri: &[usize], s: &[usize]| -> usize {
            kept.iter().zip(&ki).map(|(&d, &i)| i * s[d]).sum::<usize>()
                + red.iter().zip(ri).map(|(&d, &i)| i * s[d]).sum::<usize>()
        };
        let places: Vec<(usize, usize)> = red_idx
            .iter()
            .map(|ri| (at(ri, strides), at(ri, &dense)))
            .collect();
        if func == RowFn::Logsumexp {
            for &(i, o) in &places {
                out[o] = lse_backward_entry(y[i], g[p], lse[p]);
            }
            continue;
        }
        let terms: Vec<SumState> = places
            .iter()
            .map(|&(i, o)| {
                let v = if func == RowFn::Softmax {
                    y[i] * g[o]
                } else {
                    g[o]
                };
                sum_push(sum_identity(), v, 0.0)
            })
            .collect();
        let len = if seg_len == 0 { terms.len() } else { seg_len };
        let sum = sum_total(
            terms
                .chunks(len.max(1))
                .map(range_sum)
                .reduce(sum_combine)
                .unwrap_or_else(sum_identity),
        );
        for &(i, o) in &places {
            out[o] = if func == RowFn::Softmax {
                softmax_backward_entry(y[i], g[o], sum)
            } else {
                log_softmax_backward_entry(y[i], g[o], sum)
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let ulp = f64::from(f32::EPSILON) * b.abs().max(f64::from(f32::MIN_POSITIVE));
        (f64::from(a) - b).abs() / ulp
    }

    #[test]
    fn exp_neg_is_within_2_ulp_over_its_range() {
        let mut worst = 0.0f64;
        let mut d = 0.0f32;
        while d > -87.0 {
            let got = ld_exp_neg(d);
            let want = f64::from(d).exp();
            worst = worst.max(ulps(got, want));
            d -= 0.000_731;
        }
        // ulps() counts units of eps * |want|, i.e. at most 2 ulp of the f32 result.
        assert!(worst <= 2.0, "worst {worst} eps-units");
        assert_eq!(ld_exp_neg(-200.0), 0.0);
        assert_eq!(ld_exp_neg(0.0), 1.0);
    }

    #[test]
    fn log1p_is_within_2_ulp_over_its_range() {
        let mut worst = 0.0f64;
        let mut s = 1e-30f32;
        while s < 1e7 {
            let got = ld_log1p(s);
            let want = f64::from(s).ln_1p();
            worst = worst.max(ulps(got, want));
            s *= 1.000_37;
        }
        assert!(worst <= 2.0, "worst {worst} eps-units");
        assert_eq!(ld_log1p(0.0), 0.0);
    }

    #[test]
    fn combine_is_commutative_bit_for_bit() {
        let a = row_state(&[1.0, 2.5, -3.0]);
        let b = row_state(&[2.5, 0.25]);
        // 200 blocks: the binary counter merges unevenly sized subtrees.
        let long: Vec<f32> = (0..200 * BLOCK)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01)
            .collect();
        let st = row_state(&long);
        let want: f64 = long.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln();
        assert!((f64::from(lse_result(st)) - want).abs() < 4.0 * f64::from(f32::EPSILON) * want);
        let c = row_state(&[f32::NEG_INFINITY]);
        for (x, y) in [(a, b), (a, c), (b, c)] {
            assert_eq!(lse_combine(x, y), lse_combine(y, x));
        }
    }
}
