//! Fused linear cross-entropy (`shaders/linear.wgsl`): the options, and the materialised formula
//! in f64 that the kernels are checked against — the `tokens × vocab` logits `h · Wᵀ + b` formed
//! in full from the same f32 (or f16) inputs, then PyTorch's cross-entropy with the z-loss and
//! the soft cap, and its gradients.

use crate::reference::likelihood::{CrossEntropy, Reduction};

/// Options of the fused linear cross-entropy: PyTorch's cross-entropy options, plus the z-loss
/// and the logit soft cap. `Default` is PyTorch's `F.cross_entropy` defaults, no z-loss, no cap.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinearCrossEntropy {
    /// Class weights (`vocab` values), `ignore_index`, `label_smoothing` and the reduction,
    /// with `F.cross_entropy`'s meaning.
    pub ce: CrossEntropy,
    /// `z_loss · lse²` is added to each token's loss (PaLM's auxiliary loss, Liger's
    /// `lse_square_scale`), weighted like the rest of the token's loss by its target's class
    /// weight; 0 adds nothing. Finite and ≥ 0.
    pub z_loss: f32,
    /// Gemma-2's logit soft cap: each logit `z` becomes `cap · tanh(z / cap)` before the
    /// softmax. Finite and > 0.
    pub softcap: Option<f32>,
    /// Cut Cross-Entropy's gradient filtering, off by default: the backward skips the `d_weight`
    /// products of a block (8 vocabulary rows × 256 tokens) in which every softmax entry is
    /// below 2⁻²⁴ and no row is a target, dropping contributions each below 2⁻²⁴ of the
    /// largest (`d_hidden` is summed in the forward's walk, before the softmax is known, and
    /// is not filtered). No effect with label smoothing (whose entries are never negligible) or
    /// on the loss.
    pub grad_filter: bool,
}

/// The shape of one problem: `tokens × dims` hidden states, a `vocab × dims` weight (as
/// `torch.nn.Linear` stores it), an optional bias of `vocab` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub tokens: usize,
    pub dims: usize,
    pub vocab: usize,
}

/// The logits `h · Wᵀ + b`, soft-capped, in f64 (row-major `tokens × vocab`).
pub fn logits(
    hidden: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: Shape,
    softcap: Option<f32>,
) -> Vec<f64> {
    let mut z = vec![0.0f64; s.tokens * s.vocab];
    for t in 0..s.tokens {
        let h = &hidden[t * s.dims..(t + 1) * s.dims];
        for v in 0..s.vocab {
            let w = &weight[v * s.dims..(v + 1) * s.dims];
            let dot: f64 = h
                .iter()
                .zip(w)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            z[t * s.vocab + v] = dot + bias.map_or(0.0, |b| f64::from(b[v]));
        }
    }
    if let Some(c) = softcap {
        let c = f64::from(c);
        z.iter_mut().for_each(|x| *x = c * (*x / c).tanh());
    }
    z
}

/// `ln Σ_v e^{z_v}` of one row of f64 logits: max-shifted; −inf for an empty or all −inf row,
/// +inf with a +inf entry, NaN with a NaN.
pub fn row_lse(z: &[f64]) -> f64 {
    if z.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + z.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// The class weight of class `c`.
fn class_weight(o: &LinearCrossEntropy, c: usize) -> f64 {
    o.ce.weight.as_ref().map_or(1.0, |w| f64::from(w[c]))
}

/// Each token's log-sum-exp over the vocabulary, in f64.
pub fn lse(
    hidden: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: Shape,
    softcap: Option<f32>,
) -> Vec<f64> {
    let z = logits(hidden, weight, bias, s, softcap);
    (0..s.tokens)
        .map(|t| row_lse(&z[t * s.vocab..(t + 1) * s.vocab]))
        .collect()
}

/// Per-token losses and their weights (`w_y`, 0 for an ignored token) from f64 logits.
fn token_losses(
    z: &[f64],
    s: Shape,
    targets: &[i64],
    o: &LinearCrossEntropy,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let eps = f64::from(o.ce.label_smoothing);
    let c = s.vocab as f64;
    let mut losses = Vec::with_capacity(s.tokens);
    let mut weights = Vec::with_capacity(s.tokens);
    let mut lses = Vec::with_capacity(s.tokens);
    for (t, &y) in targets.iter().enumerate().take(s.tokens) {
        let row = &z[t * s.vocab..(t + 1) * s.vocab];
        let lse = row_lse(row);
        lses.push(lse);
        if y == o.ce.ignore_index {
            losses.push(0.0);
            weights.push(0.0);
            continue;
        }
        let y = y as usize;
        let wy = class_weight(o, y);
        let mut loss = (1.0 - eps) * wy * (lse - row[y]);
        if eps > 0.0 {
            let smooth: f64 = (0..s.vocab)
                .map(|v| class_weight(o, v) * (lse - row[v]))
                .sum();
            loss += eps / c * smooth;
        }
        loss += f64::from(o.z_loss) * wy * lse * lse;
        losses.push(loss);
        weights.push(wy);
    }
    (losses, weights, lses)
}

fn reduce(losses: &[f64], weights: &[f64], reduction: Reduction) -> Vec<f64> {
    match reduction {
        Reduction::None => losses.to_vec(),
        Reduction::Sum => vec![losses.iter().sum()],
        Reduction::Mean => vec![losses.iter().sum::<f64>() / weights.iter().sum::<f64>()],
    }
}

/// The loss: per token (`Reduction::None`) or one value, in f64.
pub fn linear_cross_entropy(
    hidden: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: Shape,
    targets: &[i64],
    o: &LinearCrossEntropy,
) -> Vec<f64> {
    let z = logits(hidden, weight, bias, s, o.softcap);
    let (losses, weights, _) = token_losses(&z, s, targets, o);
    reduce(&losses, &weights, o.ce.reduction)
}

/// The loss and its gradients in f64 (for `Reduction::None`, those of the sum of the tokens'
/// losses).
#[derive(Clone, Debug, PartialEq)]
pub struct Grads64 {
    pub loss: Vec<f64>,
    pub lse: Vec<f64>,
    pub d_hidden: Vec<f64>,
    pub d_weight: Vec<f64>,
    pub d_bias: Vec<f64>,
    /// dloss/dlogit, `tokens × vocab` (what the fused kernels never store).
    pub d_logits: Vec<f64>,
}

/// [`linear_cross_entropy`] with the gradients with respect to the hidden states, the weight
/// and the bias: `dz = s·(A p − B onehot − ε/C w) · (1 − tanh²)` with `A = (1 − ε) w_y + ε/C Σ w
/// + 2 z_loss w_y lse`, `B = (1 − ε) w_y`, `s` = 1, or 1 / Σ w_y for the mean; then
/// `d_hidden = dz W`, `d_weight = dzᵀ h`, `d_bias = Σ_t dz`.
pub fn linear_cross_entropy_grads(
    hidden: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: Shape,
    targets: &[i64],
    o: &LinearCrossEntropy,
) -> Grads64 {
    let z = logits(hidden, weight, bias, s, o.softcap);
    let (losses, weights, lses) = token_losses(&z, s, targets, o);
    let loss = reduce(&losses, &weights, o.ce.reduction);
    let scale = match o.ce.reduction {
        Reduction::Mean => 1.0 / weights.iter().sum::<f64>(),
        _ => 1.0,
    };
    let eps = f64::from(o.ce.label_smoothing);
    let c = s.vocab as f64;
    let w_sum: f64 = (0..s.vocab).map(|v| class_weight(o, v)).sum();
    let mut dz = vec![0.0f64; s.tokens * s.vocab];
    for (t, &y) in targets.iter().enumerate().take(s.tokens) {
        if y == o.ce.ignore_index {
            continue;
        }
        let y = y as usize;
        let wy = class_weight(o, y);
        let lse = lses[t];
        let a = (1.0 - eps) * wy + eps / c * w_sum + 2.0 * f64::from(o.z_loss) * wy * lse;
        let b = (1.0 - eps) * wy;
        for v in 0..s.vocab {
            let zc = z[t * s.vocab + v];
            let p = (zc - lse).exp();
            let mut g = a * p - eps / c * class_weight(o, v);
            if v == y {
                g -= b;
            }
            if let Some(cap) = o.softcap {
                let th = zc / f64::from(cap);
                g *= 1.0 - th * th;
            }
            dz[t * s.vocab + v] = g * scale;
        }
    }
    let mut d_hidden = vec![0.0f64; s.tokens * s.dims];
    let mut d_weight = vec![0.0f64; s.vocab * s.dims];
    let mut d_bias = vec![0.0f64; s.vocab];
    for t in 0..s.tokens {
        for v in 0..s.vocab {
            let g = dz[t * s.vocab + v];
            if g == 0.0 {
                continue;
            }
            d_bias[v] += g;
            for k in 0..s.dims {
                d_hidden[t * s.dims + k] += g * f64::from(weight[v * s.dims + k]);
                d_weight[v * s.dims + k] += g * f64::from(hidden[t * s.dims + k]);
            }
        }
    }
    Grads64 {
        loss,
        lse: lses,
        d_hidden,
        d_weight,
        d_bias,
        d_logits: dz,
    }
}
