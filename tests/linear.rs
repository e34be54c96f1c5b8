//! Fused linear cross-entropy on whatever adapter `Gpu::new()` finds (run with
//! WGPU_BACKEND=vulkan and WGPU_BACKEND=gl): the loss and its gradients against the materialised
//! formula in f64 from the same f32 inputs, within bounds written as formulas; PyTorch's options
//! plus the z-loss and the soft cap; odd shapes; special values; bit-identical reruns; the
//! encoder-level op with sentinel-filled outputs; the memory property on a device whose buffers
//! are far smaller than the logits; errors.

mod common;

use common::*;
use logdomain::linear::Shape;
use logdomain::reference::linear as r;
use logdomain::{
    CrossEntropy, Error, Gpu, InputFormat, Io, LinearCrossEntropy, LinearCrossEntropyOp, Op,
    Reduction, SENTINEL_BITS,
};

const U: f64 = 1.0 / (1u64 << 24) as f64;
const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Sum, Reduction::Mean];

/// A problem: inputs and options.
struct Case {
    s: Shape,
    hidden: Vec<f32>,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    targets: Vec<i64>,
    o: LinearCrossEntropy,
}

impl Case {
    fn random(seed: u64, tokens: usize, dims: usize, vocab: usize, scale: f32, bias: bool) -> Case {
        let mut rng = Rng(seed);
        let hidden = rng.vec(tokens * dims, -scale, scale);
        let weight = rng.vec(vocab * dims, -1.0, 1.0);
        let bias = bias.then(|| rng.vec(vocab, -2.0, 2.0));
        let targets = (0..tokens)
            .map(|_| (rng.next_u64() % vocab as u64) as i64)
            .collect();
        Case {
            s: Shape {
                tokens,
                dims,
                vocab,
            },
            hidden,
            weight,
            bias,
            targets,
            o: LinearCrossEntropy::default(),
        }
    }

    fn forward(&self, gpu: &Gpu) -> Result<Vec<f32>, Error> {
        gpu.linear_cross_entropy(
            &self.hidden,
            &self.weight,
            self.bias.as_deref(),
            self.s.tokens,
            self.s.dims,
            self.s.vocab,
            &self.targets,
            &self.o,
        )
    }

    fn with_grad(&self, gpu: &Gpu) -> Result<logdomain::LinearCrossEntropyGrads, Error> {
        gpu.linear_cross_entropy_with_grad(
            &self.hidden,
            &self.weight,
            self.bias.as_deref(),
            self.s.tokens,
            self.s.dims,
            self.s.vocab,
            &self.targets,
            &self.o,
        )
    }

    fn truth(&self) -> r::Grads64 {
        r::linear_cross_entropy_grads(
            &self.hidden,
            &self.weight,
            self.bias.as_deref(),
            self.s,
            &self.targets,
            &self.o,
        )
    }

    fn cw(&self, c: usize) -> f64 {
        self.o.ce.weight.as_ref().map_or(1.0, |w| f64::from(w[c]))
    }

    /// The error bound of each logit of token t: a dot product of `dims` f32 products summed
    /// in order, the bias added, `(dims + 2) u Σ_k |h_k w_k| + |b|`, and 4 u · cap for the cap.
    fn logit_err(&self, t: usize) -> f64 {
        let s = self.s;
        let mut worst = 0.0f64;
        for v in 0..s.vocab {
            let mag: f64 = (0..s.dims)
                .map(|k| {
                    f64::from(self.hidden[t * s.dims + k]).abs()
                        * f64::from(self.weight[v * s.dims + k]).abs()
                })
                .sum::<f64>()
                + self.bias.as_ref().map_or(0.0, |b| f64::from(b[v]).abs());
            worst = worst.max(mag);
        }
        (s.dims as f64 + 2.0) * U * worst + self.o.softcap.map_or(0.0, |c| 4.0 * U * f64::from(c))
    }

    /// The error bound of token t's lse: its logits' error, the monoid's rounding along a
    /// lane's vocab / 64 rows and the merge (vocab / 64 + 24 u), and 4 ulp of lse.
    fn lse_err(&self, t: usize, lse: f64) -> f64 {
        self.logit_err(t) + (self.s.vocab as f64 / 64.0 + 24.0) * U + 4.0 * U * lse.abs()
    }

    /// Each token's loss bound (see `shaders/linear.wgsl` for the formula): the lse and target
    /// logit errors through (1 − ε) w_y (lse − z_y), the smoothing term's W lse − Σ w_c z_c
    /// with its sum's rounding, the z-loss's 2 |lse| err + 3 u lse².
    fn token_bounds(&self, t64: &r::Grads64) -> Vec<f64> {
        let s = self.s;
        let eps = f64::from(self.o.ce.label_smoothing);
        let z = r::logits(
            &self.hidden,
            &self.weight,
            self.bias.as_deref(),
            s,
            self.o.softcap,
        );
        (0..s.tokens)
            .map(|t| {
                let y = self.targets[t];
                if y == self.o.ce.ignore_index {
                    return 0.0;
                }
                let wy = self.cw(y as usize);
                let lse = t64.lse[t];
                let el = self.lse_err(t, lse);
                let ez = self.logit_err(t);
                let row = &z[t * s.vocab..(t + 1) * s.vocab];
                let nll = lse - row[y as usize];
                let mut b =
                    (1.0 - eps) * wy * (el + ez + 2.0 * U * nll.abs()) + 2.0 * U * wy * nll.abs();
                if eps > 0.0 {
                    let w_sum: f64 = (0..s.vocab).map(|v| self.cw(v)).sum();
                    let wz: f64 = (0..s.vocab).map(|v| (self.cw(v) * row[v]).abs()).sum();
                    let sum_err = w_sum * el
                        + (0..s.vocab).map(|v| self.cw(v).abs()).sum::<f64>() * ez
                        + (s.vocab as f64 / 64.0 + 24.0) * U * wz
                        + 2.0 * U * (w_sum.abs() * lse.abs() + wz);
                    b += eps / s.vocab as f64 * sum_err;
                }
                let zl = f64::from(self.o.z_loss);
                b += zl * wy * (2.0 * lse.abs() * el + 4.0 * U * lse * lse);
                b
            })
            .collect()
    }

    /// The bound of the reduced loss: the tokens' bounds, plus the pairwise sum's rounding
    /// (log2 tokens + 64) u Σ |loss_t|, divided by Σ w_y for the mean (with its own rounding).
    fn loss_bounds(&self, t64: &r::Grads64) -> Vec<f64> {
        let tb = self.token_bounds(t64);
        let per = r::linear_cross_entropy(
            &self.hidden,
            &self.weight,
            self.bias.as_deref(),
            self.s,
            &self.targets,
            &LinearCrossEntropy {
                ce: CrossEntropy {
                    reduction: Reduction::None,
                    ..self.o.ce.clone()
                },
                ..self.o.clone()
            },
        );
        let sum_abs: f64 = per.iter().map(|l| l.abs()).sum();
        let levels = (self.s.tokens as f64).log2() + 64.0;
        let total: f64 = tb.iter().sum::<f64>() + levels * U * sum_abs;
        match self.o.ce.reduction {
            Reduction::None => tb.iter().map(|b| b + 2.0 * U * 0.0).collect(),
            Reduction::Sum => vec![total],
            Reduction::Mean => {
                let w: f64 = self
                    .targets
                    .iter()
                    .filter(|&&y| y != self.o.ce.ignore_index)
                    .map(|&y| self.cw(y as usize))
                    .sum();
                vec![total / w.abs() + 2.0 * levels * U * (sum_abs / w.abs())]
            }
        }
    }

    /// Bounds of dloss/dz: s (|A| Δp + 6 u (|A| p + |B| + ε/C |w_c|)), Δp = min(p (e^err − 1), 1)
    /// with err = 2 err_z + err_lse, the error of z − lse.
    fn dz_bounds(&self, t64: &r::Grads64) -> Vec<f64> {
        let s = self.s;
        let eps = f64::from(self.o.ce.label_smoothing);
        let w_sum: f64 = (0..s.vocab).map(|v| self.cw(v)).sum();
        let weights: f64 = self
            .targets
            .iter()
            .filter(|&&y| y != self.o.ce.ignore_index)
            .map(|&y| self.cw(y as usize))
            .sum();
        let scale = if self.o.ce.reduction == Reduction::Mean {
            1.0 / weights
        } else {
            1.0
        };
        let z = r::logits(
            &self.hidden,
            &self.weight,
            self.bias.as_deref(),
            s,
            self.o.softcap,
        );
        let mut out = vec![0.0; s.tokens * s.vocab];
        for t in 0..s.tokens {
            let y = self.targets[t];
            if y == self.o.ce.ignore_index {
                continue;
            }
            let wy = self.cw(y as usize);
            let lse = t64.lse[t];
            let a = ((1.0 - eps) * wy
                + eps / s.vocab as f64 * w_sum
                + 2.0 * f64::from(self.o.z_loss) * wy * lse)
                .abs();
            let b = (1.0 - eps) * wy;
            let err = 2.0 * self.logit_err(t) + self.lse_err(t, lse);
            for v in 0..s.vocab {
                let p = (z[t * s.vocab + v] - lse).exp();
                let c = eps / s.vocab as f64 * self.cw(v).abs();
                // |p̂ − p| ≤ p (e^err − 1), and never more than 1 (both lie in [0, 1]).
                let dp = (p * err.exp_m1()).min(1.0);
                out[t * s.vocab + v] = scale.abs() * (a * dp + 6.0 * U * (a * p + b + c))
                    + self
                        .o
                        .softcap
                        .map_or(0.0, |_| 8.0 * U * t64.d_logits[t * s.vocab + v].abs());
            }
        }
        out
    }

    /// Checks the loss, the lse and the gradients against the f64 truth.
    fn check_grads(&self, got: &logdomain::LinearCrossEntropyGrads, what: &str) {
        let s = self.s;
        let t64 = self.truth();
        check_values(
            &got.loss,
            &t64.loss,
            &self.loss_bounds(&t64),
            &format!("{what}: loss"),
        );
        let lse_b: Vec<f64> = (0..s.tokens).map(|t| self.lse_err(t, t64.lse[t])).collect();
        check_values(&got.lse, &t64.lse, &lse_b, &format!("{what}: lse"));
        let dzb = self.dz_bounds(&t64);
        // d_hidden[t, k] = Σ_v dz w_vk: the entries' bounds through |w|, and the two-level sum
        // (64 rows a block, the blocks in order) (64 + vocab / 64 + 4) u Σ_v |dz w|.
        let sum_levels = |n: usize| (64.0 + n as f64 / 64.0 + 4.0) * U;
        let mut dh_b = vec![0.0; s.tokens * s.dims];
        let mut dw_b = vec![0.0; s.vocab * s.dims];
        let mut db_b = vec![0.0; s.vocab];
        for t in 0..s.tokens {
            for v in 0..s.vocab {
                let dz = t64.d_logits[t * s.vocab + v].abs();
                let e = dzb[t * s.vocab + v];
                db_b[v] += e + sum_levels(s.tokens) * dz;
                for k in 0..s.dims {
                    let w = f64::from(self.weight[v * s.dims + k]).abs();
                    let h = f64::from(self.hidden[t * s.dims + k]).abs();
                    dh_b[t * s.dims + k] += e * w + sum_levels(s.vocab) * dz * w;
                    dw_b[v * s.dims + k] += e * h + sum_levels(s.tokens) * dz * h;
                }
            }
        }
        check_values(
            &got.d_hidden,
            &t64.d_hidden,
            &dh_b,
            &format!("{what}: d_hidden"),
        );
        check_values(
            &got.d_weight,
            &t64.d_weight,
            &dw_b,
            &format!("{what}: d_weight"),
        );
        match (&got.d_bias, &self.bias) {
            (Some(db), Some(_)) => check_values(db, &t64.d_bias, &db_b, &format!("{what}: d_bias")),
            (None, None) => {}
            _ => panic!("{what}: d_bias present without a bias or missing with one"),
        }
    }
}

/// Buffers of an encoder-level run: the inputs, the outputs, and what the outputs hold.
struct Recorded {
    ins: Vec<wgpu::Buffer>,
    outs: Vec<wgpu::Buffer>,
    values: Vec<Vec<f32>>,
}

/// Records `op` over new buffers holding `inputs`, its outputs filled with the sentinel first,
/// submits, and reads the outputs back.
fn record_with_sentinels(gpu: &Gpu, op: &LinearCrossEntropyOp, inputs: &[&[u8]]) -> Recorded {
    use wgpu::util::DeviceExt;
    let dev = gpu.device();
    let make = |bytes: &[u8]| {
        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
    };
    let ins: Vec<wgpu::Buffer> = inputs.iter().map(|b| make(b)).collect();
    let outs: Vec<wgpu::Buffer> = op
        .output_bytes_needed()
        .iter()
        .map(|&b| make(bytemuck::cast_slice(&vec![SENTINEL_BITS; (b / 4) as usize])))
        .collect();
    let ins_ref: Vec<&wgpu::Buffer> = ins.iter().collect();
    let outs_ref: Vec<&wgpu::Buffer> = outs.iter().collect();
    let mut encoder = dev.create_command_encoder(&Default::default());
    op.record(
        &mut encoder,
        Io {
            inputs: &ins_ref,
            outputs: &outs_ref,
        },
    )
    .unwrap();
    gpu.queue().submit([encoder.finish()]);
    let values = outs
        .iter()
        .map(|b| gpu.read_f32(b, b.size()).unwrap())
        .collect();
    Recorded { ins, outs, values }
}

/// Every value within its bound of the f64 truth (NaN and infinities matched exactly, never a
/// sentinel), reporting the worst ratio on failure.
fn check_values(got: &[f32], want: &[f64], bound: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        assert_ne!(g.to_bits(), SENTINEL_BITS, "{what}[{i}]: sentinel left");
        if w.is_nan() {
            assert!(g.is_nan(), "{what}[{i}]: {g}, want NaN");
            continue;
        }
        if w.is_infinite() {
            assert_eq!(f64::from(g), w, "{what}[{i}]");
            continue;
        }
        let err = (f64::from(g) - w).abs();
        assert!(
            err <= b,
            "{what}[{i}]: {g} against {w}: error {err:e} exceeds the bound {b:e}"
        );
    }
}

#[test]
fn default_options_match_the_materialised_formula() {
    let gpu = gpu();
    for (seed, n, d, v, bias) in [
        (1, 20, 16, 50, true),
        (2, 7, 5, 3, false),
        (3, 33, 37, 129, true),
        (4, 1, 1, 1, false),
        (5, 9, 64, 200, false),
    ] {
        for reduction in REDUCTIONS {
            let mut c = Case::random(seed, n, d, v, 1.0, bias);
            c.o.ce.reduction = reduction;
            let got = c.with_grad(gpu).unwrap();
            c.check_grads(&got, &format!("{n}x{d}x{v} bias {bias} {reduction:?}"));
            // The forward alone gives the same bits as the forward of the grad op.
            let fwd = c.forward(gpu).unwrap();
            assert_eq!(
                fwd.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                got.loss.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{n}x{d}x{v} {reduction:?}: forward and with_grad"
            );
        }
    }
}

#[test]
fn every_option_matches_the_materialised_formula() {
    let gpu = gpu();
    let mut rng = Rng(11);
    for (i, (n, d, v)) in [(17, 12, 40), (40, 9, 67)].into_iter().enumerate() {
        for reduction in REDUCTIONS {
            let mut c = Case::random(100 + i as u64, n, d, v, 2.0, i == 0);
            c.o.ce.reduction = reduction;
            c.o.ce.weight = Some(rng.vec(v, 0.1, 2.0));
            c.o.ce.label_smoothing = 0.1;
            c.o.ce.ignore_index = -1;
            c.targets[3] = -1;
            c.targets[5] = -1;
            c.o.z_loss = 1e-3;
            c.o.softcap = Some(5.0);
            let got = c.with_grad(gpu).unwrap();
            c.check_grads(&got, &format!("{n}x{d}x{v} all options {reduction:?}"));
            // Each option alone.
            for k in 0..4 {
                let mut one = Case::random(200 + k, n, d, v, 3.0, true);
                one.o.ce.reduction = reduction;
                match k {
                    0 => one.o.ce.weight = Some(rng.vec(v, 0.0, 3.0)),
                    1 => one.o.ce.label_smoothing = 0.25,
                    2 => one.o.z_loss = 0.01,
                    _ => one.o.softcap = Some(2.0),
                }
                let got = one.with_grad(gpu).unwrap();
                one.check_grads(&got, &format!("{n}x{d}x{v} option {k} {reduction:?}"));
            }
        }
    }
}

/// PyTorch's cases written out: equal logits give ln V; label smoothing 1 gives the uniform
/// target's loss; an ignored token adds nothing, and all ignored gives NaN for the mean (0/0),
/// 0 for the sum and zero gradients.
#[test]
fn pytorch_cases() {
    let gpu = gpu();
    let o = LinearCrossEntropy::default();
    let loss = gpu
        .linear_cross_entropy(&[1.0, 2.0], &[0.5; 8], None, 1, 2, 4, &[2], &o)
        .unwrap();
    assert!((f64::from(loss[0]) - 4f64.ln()).abs() < 4.0 * U * 4f64.ln() + 1e-7);
    let mut c = Case::random(7, 6, 4, 10, 1.0, true);
    c.targets = vec![-100; 6];
    for (reduction, want) in [(Reduction::Mean, f32::NAN), (Reduction::Sum, 0.0)] {
        c.o.ce.reduction = reduction;
        let g = c.with_grad(gpu).unwrap();
        assert_eq!(g.loss.len(), 1);
        assert!(g.loss[0].to_bits() == want.to_bits() || (want.is_nan() && g.loss[0].is_nan()));
        assert!(
            g.d_hidden.iter().chain(&g.d_weight).all(|&x| x == 0.0),
            "{reduction:?}"
        );
        assert!(g.d_bias.unwrap().iter().all(|&x| x == 0.0));
    }
    c.o.ce.reduction = Reduction::None;
    assert_eq!(c.forward(gpu).unwrap(), vec![0.0; 6]);
    // label_smoothing = 1: Σ_c (lse − z_c) / C.
    let mut c = Case::random(8, 5, 3, 7, 1.0, false);
    c.o.ce.label_smoothing = 1.0;
    c.o.ce.reduction = Reduction::None;
    let got = c.with_grad(gpu).unwrap();
    c.check_grads(&got, "label_smoothing 1");
}

#[test]
fn huge_logits_and_special_values() {
    let gpu = gpu();
    // Logits near f32's limit: 1e19 · 1e19 = 1e38 per product, two products per dot.
    let mut c = Case::random(9, 4, 2, 5, 1.0, false);
    c.hidden = vec![1e19, 0.5e19, -1e19, 1e19, 0.0, 0.0, 1.0, -1.0];
    c.weight = (0..10).map(|i| (i as f32 - 4.5) * 1e18).collect();
    c.o.ce.reduction = Reduction::None;
    let got = c.with_grad(gpu).unwrap();
    c.check_grads(&got, "huge logits");
    // The same with a soft cap: every capped logit lies in [−30, 30].
    c.o.softcap = Some(30.0);
    let got = c.with_grad(gpu).unwrap();
    c.check_grads(&got, "huge logits, capped");
    // An infinite hidden state makes its token's logits ±inf or NaN: its loss is NaN or inf as
    // the materialised formula's is; the other tokens are untouched.
    let mut c = Case::random(10, 3, 2, 4, 1.0, false);
    c.hidden[0] = f32::INFINITY;
    c.hidden[1] = 0.0;
    c.o.ce.reduction = Reduction::None;
    let got = c.forward(gpu).unwrap();
    let want = r::linear_cross_entropy(&c.hidden, &c.weight, None, c.s, &c.targets, &c.o);
    for t in 1..3 {
        assert!((f64::from(got[t]) - want[t]).abs() < 1e-5, "token {t}");
    }
    assert!(
        got[0].is_nan() == want[0].is_nan(),
        "{} against {}",
        got[0],
        want[0]
    );
    if !want[0].is_nan() {
        assert_eq!(f64::from(got[0]), want[0]);
    }
}

/// Shapes that are not multiples of the tiles, chunks that split the vocabulary and the tokens
/// over several dispatches (long dims make short chunks), and V = 1.
#[test]
fn odd_shapes_and_many_chunks() {
    let gpu = gpu();
    // The forward's walk carries d_hidden's running sums over blocks and chunks (dims 1000: 768
    // rows a chunk), their maximum rising along the vocabulary (logits growing with the row),
    // with and without the cap.
    for (seed, n, d, v, cap) in [(25, 17, 1000, 2000, None), (26, 9, 1000, 1700, Some(6.0))] {
        let mut c = Case::random(seed, n, d, v, 0.05, true);
        for (row, w) in c.weight.chunks_mut(d).enumerate() {
            w[0] = row as f32 / 50.0;
        }
        c.hidden.iter_mut().step_by(d).for_each(|h| *h = 1.0);
        c.o.softcap = cap;
        c.o.ce.reduction = Reduction::Sum;
        let got = c.with_grad(gpu).unwrap();
        c.check_grads(&got, &format!("rising maxima {n}x{d}x{v} cap {cap:?}"));
    }
    // dims 1000, 700 and 1028 take the 16-byte words with 2, 2 and 4 words a lane (1028: the
    // last lanes' words past the row); 1 and 3 the 4-byte words.
    for (seed, n, d, v) in [
        (20, 3, 1, 1),
        (21, 65, 3, 1),
        (22, 9, 1000, 300),
        (23, 130, 700, 70),
        (24, 11, 1028, 40),
    ] {
        let mut c = Case::random(seed, n, d, v, 0.2, seed % 2 == 0);
        c.o.ce.reduction = Reduction::Mean;
        let got = c.with_grad(gpu).unwrap();
        c.check_grads(&got, &format!("{n}x{d}x{v}"));
    }
}

#[test]
fn reruns_are_bit_identical() {
    let gpu = gpu();
    let mut c = Case::random(30, 50, 40, 300, 1.0, true);
    c.o.ce.label_smoothing = 0.1;
    let a = c.with_grad(gpu).unwrap();
    for _ in 0..2 {
        let b = c.with_grad(gpu).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.loss), bits(&b.loss));
        assert_eq!(bits(&a.d_hidden), bits(&b.d_hidden));
        assert_eq!(bits(&a.d_weight), bits(&b.d_weight));
        assert_eq!(
            bits(a.d_bias.as_ref().unwrap()),
            bits(b.d_bias.as_ref().unwrap())
        );
    }
}

/// The reference's gradients are the derivatives of its loss: central differences in f64 on
/// a few entries of each input, every option on.
#[test]
fn reference_gradients_are_the_finite_differences() {
    let mut c = Case::random(40, 4, 3, 6, 1.0, true);
    c.o.ce.weight = Some(vec![0.5, 1.0, 2.0, 1.5, 0.7, 1.1]);
    c.o.ce.label_smoothing = 0.2;
    c.o.z_loss = 0.05;
    c.o.softcap = Some(3.0);
    c.targets[1] = -100;
    for reduction in REDUCTIONS {
        c.o.ce.reduction = reduction;
        let g = c.truth();
        let total = |c: &Case| -> f64 {
            r::linear_cross_entropy(
                &c.hidden,
                &c.weight,
                c.bias.as_deref(),
                c.s,
                &c.targets,
                &c.o,
            )
            .iter()
            .sum()
        };
        // Central differences of the summed loss, moving one entry of one input by ±1e-3.
        let h = 1e-3f32;
        let fd = |nudge: &dyn Fn(&mut Case, f32)| {
            let (mut p, mut m) = (c.clone_case(), c.clone_case());
            nudge(&mut p, h);
            nudge(&mut m, -h);
            (total(&p) - total(&m)) / f64::from(2.0 * h)
        };
        let check = |fd: f64, an: f64, what: &str| {
            assert!(
                (fd - an).abs() < 2e-3 * (1.0 + an.abs()),
                "{what}: {fd} against {an}"
            );
        };
        for i in [0, 5, 11] {
            let d = fd(&|c: &mut Case, e| c.hidden[i] += e);
            check(d, g.d_hidden[i], &format!("d_hidden[{i}] {reduction:?}"));
        }
        for i in [0, 7, 17] {
            let d = fd(&|c: &mut Case, e| c.weight[i] += e);
            check(d, g.d_weight[i], &format!("d_weight[{i}] {reduction:?}"));
        }
        for i in [0, 4] {
            let d = fd(&|c: &mut Case, e| c.bias.as_mut().unwrap()[i] += e);
            check(d, g.d_bias[i], &format!("d_bias[{i}] {reduction:?}"));
        }
    }
}

impl Case {
    fn clone_case(&self) -> Case {
        Case {
            s: self.s,
            hidden: self.hidden.clone(),
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            targets: self.targets.clone(),
            o: self.o.clone(),
        }
    }
}

/// f16 hidden states and weight give the f32 op's bits on the same values.
#[test]
fn f16_inputs_match_f32_on_the_same_values() {
    let gpu = gpu();
    let c = Case::random(50, 21, 13, 90, 1.0, true);
    let h16: Vec<half::f16> = c.hidden.iter().map(|&x| half::f16::from_f32(x)).collect();
    let w16: Vec<half::f16> = c.weight.iter().map(|&x| half::f16::from_f32(x)).collect();
    let c32 = Case {
        hidden: h16.iter().map(|x| x.to_f32()).collect(),
        weight: w16.iter().map(|x| x.to_f32()).collect(),
        ..c.clone_case()
    };
    let a = c32.with_grad(gpu).unwrap();
    c32.check_grads(&a, "f16 values as f32");
    let b = gpu
        .linear_cross_entropy_with_grad_f16(
            &h16,
            &w16,
            c.bias.as_deref(),
            21,
            13,
            90,
            &c.targets,
            &c.o,
        )
        .unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.loss), bits(&b.loss));
    assert_eq!(bits(&a.d_hidden), bits(&b.d_hidden));
    assert_eq!(bits(&a.d_weight), bits(&b.d_weight));
    let f = gpu
        .linear_cross_entropy_f16(&h16, &w16, c.bias.as_deref(), 21, 13, 90, &c.targets, &c.o)
        .unwrap();
    assert_eq!(bits(&a.loss), bits(&f));
}

/// The materialised logits have the fused kernels' bits: the cross-entropy of those logits
/// by the library's own row kernels is the fused loss within the bound.
#[test]
fn materialised_logits_agree() {
    let gpu = gpu();
    let c = Case::random(60, 19, 33, 77, 1.0, true);
    let z = gpu
        .linear_logits(&c.hidden, &c.weight, c.bias.as_deref(), 19, 33, 77, None)
        .unwrap();
    let z64 = r::logits(&c.hidden, &c.weight, c.bias.as_deref(), c.s, None);
    for t in 0..19 {
        let e = c.logit_err(t);
        for v in 0..77 {
            let i = t * 77 + v;
            assert!((f64::from(z[i]) - z64[i]).abs() <= e, "logit {t},{v}");
        }
    }
    let ce = gpu
        .cross_entropy(&z, 19, 77, &c.targets, &CrossEntropy::default())
        .unwrap();
    // The materialised backward: the row family's gradient of those logits, then the gradient
    // products, against the fused gradients' bounds.
    let (ce_loss, dz) = gpu
        .cross_entropy_with_grad(&z, 19, 77, &c.targets, &CrossEntropy::default())
        .unwrap();
    assert_eq!(ce_loss[0].to_bits(), ce[0].to_bits());
    let mut dense = gpu
        .linear_grads_from_dlogits(&c.hidden, &c.weight, &dz, 19, 33, 77)
        .unwrap();
    let fused = c.with_grad(gpu).unwrap();
    dense.loss = fused.loss.clone();
    dense.lse = fused.lse.clone();
    c.check_grads(&dense, "materialised backward");
    let fused = fused.loss;
    let t64 = c.truth();
    let b = c.loss_bounds(&t64)[0];
    assert!(
        (ce[0] - fused[0]).abs() as f64 <= 2.0 * b,
        "{} against {}",
        ce[0],
        fused[0]
    );
}

/// The encoder-level op on buffers the test owns, outputs filled with the sentinel first:
/// every output entry is written, with the blocking call's bits.
#[test]
fn encoder_level_op_writes_every_output() {
    let gpu = gpu();
    let c = Case::random(70, 12, 10, 30, 1.0, true);
    let op = LinearCrossEntropyOp::with_grad(gpu, c.s, true, &c.o, InputFormat::F32).unwrap();
    assert_eq!(op.input_names().len(), 4);
    assert_eq!(
        op.output_names(),
        vec![
            "loss (f32)",
            "lse (f32, tokens)",
            "d_hidden (f32, tokens × dims)",
            "d_weight (f32, vocab × dims)",
            "d_bias (f32, vocab)"
        ]
    );
    let t32: Vec<i32> = c.targets.iter().map(|&t| t as i32).collect();
    let r = record_with_sentinels(
        gpu,
        &op,
        &[
            bytemuck::cast_slice(&c.hidden),
            bytemuck::cast_slice(&c.weight),
            bytemuck::cast_slice(&t32),
            bytemuck::cast_slice(c.bias.as_ref().unwrap()),
        ],
    );
    let blocking = c.with_grad(gpu).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&r.values[0]), bits(&blocking.loss));
    assert_eq!(bits(&r.values[1]), bits(&blocking.lse));
    assert_eq!(bits(&r.values[2]), bits(&blocking.d_hidden));
    assert_eq!(bits(&r.values[3]), bits(&blocking.d_weight));
    assert_eq!(bits(&r.values[4]), bits(blocking.d_bias.as_ref().unwrap()));
    let ins_ref: Vec<&wgpu::Buffer> = r.ins.iter().collect();
    let outs_ref: Vec<&wgpu::Buffer> = r.outs.iter().collect();
    // A missing output is an error, not a panic.
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    let err = op
        .record(
            &mut encoder,
            Io {
                inputs: &ins_ref,
                outputs: &outs_ref[..2],
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Buffer(_)), "{err}");
}

/// The memory property: on a device whose buffers hold at most 1 MiB, tokens × vocab × 4 bytes
/// is 16 MiB (16 times the largest buffer), the logits could not exist, and the fused op runs
/// with scratch proportional to tokens + vocab; its results are the ones of the default device.
#[test]
fn runs_where_the_logits_exceed_the_largest_buffer_many_times() {
    let (device, queue) = own_device(|l| {
        l.max_buffer_size = 1 << 20;
        l.max_storage_buffer_binding_size = 1 << 20;
    });
    let small = Gpu::from_device(device, queue);
    small.fill_outputs_with_sentinel(true);
    let (n, d, v) = (1024, 8, 4096);
    let logits_bytes = (n * v * 4) as u64;
    assert!(logits_bytes >= 16 * small.device().limits().max_buffer_size);
    let mut c = Case::random(80, n, d, v, 1.0, true);
    c.o.ce.label_smoothing = 0.05;
    let op = LinearCrossEntropyOp::with_grad(&small, c.s, true, &c.o, InputFormat::F32).unwrap();
    let words_per_token = 8 + 3 + 1;
    assert!(
        op.scratch_bytes() <= 4 * (words_per_token * n + v + 64) as u64,
        "scratch {} bytes",
        op.scratch_bytes()
    );
    assert!(op.scratch_bytes() * 100 < logits_bytes);
    // The materialised logits cannot be made here.
    let err = small
        .linear_logits(&c.hidden, &c.weight, c.bias.as_deref(), n, d, v, None)
        .unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    let got = c.with_grad(&small).unwrap();
    let reference = c.with_grad(gpu()).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got.loss), bits(&reference.loss));
    assert_eq!(bits(&got.d_hidden), bits(&reference.d_hidden));
    assert_eq!(bits(&got.d_weight), bits(&reference.d_weight));
    // And against the f64 truth, the loss.
    let t64 = c.truth();
    check_values(
        &got.loss,
        &t64.loss,
        &c.loss_bounds(&t64),
        "small device: loss",
    );
}

#[test]
fn bad_arguments_are_errors() {
    let gpu = gpu();
    let c = Case::random(90, 4, 3, 5, 1.0, false);
    let call = |h: &[f32], w: &[f32], n, d, v, t: &[i64], o: &LinearCrossEntropy| {
        gpu.linear_cross_entropy(h, w, None, n, d, v, t, o)
    };
    let o = LinearCrossEntropy::default();
    let e = call(&c.hidden[1..], &c.weight, 4, 3, 5, &c.targets, &o).unwrap_err();
    assert!(
        matches!(e, Error::InputLength { what: "hidden", .. }),
        "{e}"
    );
    let e = call(&c.hidden, &c.weight[1..], 4, 3, 5, &c.targets, &o).unwrap_err();
    assert!(
        matches!(e, Error::InputLength { what: "weight", .. }),
        "{e}"
    );
    let e = call(&c.hidden, &c.weight, 4, 3, 5, &c.targets[1..], &o).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InputLength {
                what: "targets",
                ..
            }
        ),
        "{e}"
    );
    let e = call(&c.hidden, &c.weight, 4, 3, 5, &[0, 1, 5, 0], &o).unwrap_err();
    assert!(e.to_string().contains("row 2"), "{e}");
    let e = gpu
        .linear_cross_entropy(
            &c.hidden,
            &c.weight,
            Some(&[0.0; 4]),
            4,
            3,
            5,
            &c.targets,
            &o,
        )
        .unwrap_err();
    assert!(matches!(e, Error::InputLength { what: "bias", .. }), "{e}");
    for bad in [
        LinearCrossEntropy {
            z_loss: -1.0,
            ..o.clone()
        },
        LinearCrossEntropy {
            softcap: Some(0.0),
            ..o.clone()
        },
        LinearCrossEntropy {
            softcap: Some(f32::INFINITY),
            ..o.clone()
        },
        LinearCrossEntropy {
            ce: CrossEntropy {
                label_smoothing: 1.5,
                ..CrossEntropy::default()
            },
            ..o.clone()
        },
        LinearCrossEntropy {
            ce: CrossEntropy {
                weight: Some(vec![1.0; 4]),
                ..CrossEntropy::default()
            },
            ..o.clone()
        },
    ] {
        let e = call(&c.hidden, &c.weight, 4, 3, 5, &c.targets, &bad).unwrap_err();
        assert!(
            matches!(e, Error::Value(_) | Error::InputLength { .. }),
            "{e}"
        );
    }
    let e = call(&[], &[], 0, 0, 5, &[], &o).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    // No token: PyTorch's empty reductions.
    let empty = call(&[], &c.weight, 0, 3, 5, &[], &o).unwrap();
    assert!(empty[0].is_nan());
}

/// Operands larger than a storage binding: on a device whose bindings hold 64 KiB, the hidden
/// states, the weight and the gradients (76 to 154 KB) are bound a window of rows at a time;
/// the results are within the bounds of the f64 truth, for the 16-byte and the 4-byte words.
#[test]
fn operands_larger_than_a_binding_are_windowed() {
    let (device, queue) = own_device(|l| {
        l.max_storage_buffer_binding_size = 64 * 1024;
    });
    let small = Gpu::from_device(device, queue);
    small.fill_outputs_with_sentinel(true);
    // With label smoothing the backward recomputes the logits; without, d_hidden comes from the
    // forward's walk and its target terms from the weight window holding each target's row.
    for (seed, d, eps) in [
        (110, 64, 0.1),
        (111, 63, 0.1),
        (113, 64, 0.0),
        (114, 63, 0.0),
    ] {
        let mut c = Case::random(seed, 300, d, 600, 0.5, true);
        c.o.ce.label_smoothing = eps;
        if eps == 0.0 {
            c.o.z_loss = 1e-3;
            c.o.softcap = Some(3.0);
            c.o.ce.weight = Some(Rng(seed).vec(600, 0.2, 2.0));
        }
        assert!(c.weight.len() * 4 > 64 * 1024 && c.hidden.len() * 4 > 64 * 1024);
        let got = c.with_grad(&small).unwrap();
        c.check_grads(&got, &format!("64 KiB bindings, dims {d}, smoothing {eps}"));
    }
    // The materialised gradient products too, their dloss/dlogits (720 KB) in windows.
    let c = Case::random(112, 300, 64, 600, 0.5, false);
    let dz: Vec<f32> = c.truth().d_logits.iter().map(|&x| x as f32).collect();
    let mut g = small
        .linear_grads_from_dlogits(&c.hidden, &c.weight, &dz, 300, 64, 600)
        .unwrap();
    let fused = c.with_grad(gpu()).unwrap();
    g.loss = fused.loss;
    g.lse = fused.lse;
    g.d_bias = None;
    c.check_grads(&g, "64 KiB bindings, materialised gradient products");
}

/// Gradient filtering: d_weight's blocks whose softmax entries are all below 2⁻²⁴ (and hold no
/// target) are skipped. Each token's hidden state here is twice its target's weight row, so the
/// target's logit leads the others by about 24 and most blocks are negligible; the filtered
/// d_weight differs from the unfiltered one by at most the dropped terms,
/// `s·|A|·Σ_{p<2⁻²⁴} p_t |h_t|` per entry (bounded here by `tokens · 2⁻²⁴ · max|h|`), d_hidden
/// (summed in the forward's walk) and the loss are untouched. With label smoothing the filter
/// does nothing (bit for bit).
#[test]
fn gradient_filtering_drops_only_negligible_terms() {
    let gpu = gpu();
    let (n, d, v) = (40, 64, 3000);
    let mut c = Case::random(120, n, d, v, 1.0, false);
    for t in 0..n {
        let y = c.targets[t] as usize;
        for k in 0..d {
            c.hidden[t * d + k] = 2.0 * c.weight[y * d + k];
        }
    }
    c.o.ce.reduction = Reduction::Sum;
    let plain = c.with_grad(gpu).unwrap();
    c.o.grad_filter = true;
    let filtered = c.with_grad(gpu).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&plain.loss), bits(&filtered.loss));
    assert!(
        bits(&plain.d_weight) != bits(&filtered.d_weight),
        "nothing was skipped"
    );
    let max_h = c.hidden.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
    let dropped_w = n as f64 * U * max_h;
    // d_hidden is summed in the forward's walk, unfiltered.
    assert_eq!(bits(&plain.d_hidden), bits(&filtered.d_hidden));
    for (a, b) in plain.d_weight.iter().zip(&filtered.d_weight) {
        let e = (f64::from(*a) - f64::from(*b)).abs();
        assert!(
            e <= dropped_w + 4.0 * U * f64::from(a.abs()),
            "d_weight: {a} against {b}"
        );
    }
    // Against the f64 truth, the filter's error is inside the contract's bound here.
    c.check_grads(&filtered, "filtered");
    // Label smoothing turns it off.
    c.o.ce.label_smoothing = 0.1;
    let a = c.with_grad(gpu).unwrap();
    c.o.grad_filter = false;
    let b = c.with_grad(gpu).unwrap();
    assert!(bits(&a.d_hidden) == bits(&b.d_hidden) && bits(&a.d_weight) == bits(&b.d_weight));
}

/// The plain cross-entropy of given logits with the fused op's options (`logit_cross_entropy`):
/// the loss and lse bit for bit the fused op's with the identity as the weight (whose products
/// are the logits exactly), which the other tests hold to the f64 truth; dloss/dlogits against
/// that truth, and equal to the identity's d_hidden where the fused backward recomputes each
/// entry (label smoothing). Both operand forms (16-byte words where
/// classes % 4 = 0, 4-byte words otherwise), f16 logits, the encoder-level op.
#[test]
fn given_logits_are_the_fused_op_with_the_identity_weight() {
    let gpu = gpu();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (seed, n, v) in [
        (300, 1, 1),
        (301, 7, 3),
        (302, 20, 50),
        (303, 33, 64),
        (304, 9, 300),
        (305, 70, 257),
    ] {
        for k in 0..3 {
            for reduction in REDUCTIONS {
                let mut c = Case::random(seed, n, v, v, 3.0, false);
                c.weight = (0..v * v)
                    .map(|i| if i / v == i % v { 1.0 } else { 0.0 })
                    .collect();
                c.o.ce.reduction = reduction;
                if k > 0 {
                    let mut rng = Rng(seed + 7);
                    c.o.ce.weight = Some(rng.vec(v, 0.1, 2.0));
                    c.o.ce.ignore_index = -1;
                    c.targets[0] = -1;
                    c.o.z_loss = 1e-2;
                    c.o.softcap = Some(if k == 1 { 4.0 } else { 40.0 });
                    c.o.ce.label_smoothing = if k == 1 { 0.1 } else { 0.0 };
                }
                let what = format!("{n}x{v} options {k} {reduction:?}");
                let fused = c.with_grad(gpu).unwrap();
                c.check_grads(&fused, &what);
                let got = gpu
                    .logit_cross_entropy_with_grad(&c.hidden, n, v, &c.targets, &c.o)
                    .unwrap();
                assert_eq!(bits(&got.loss), bits(&fused.loss), "{what}: loss");
                assert_eq!(bits(&got.lse), bits(&fused.lse), "{what}: lse");
                // dloss/dlogits within its bound of the truth, and with label smoothing (whose
                // fused backward recomputes each entry as `lce_logit_grad` computes it) equal to
                // the fused d_hidden of the identity.
                let t64 = c.truth();
                check_values(
                    &got.d_logits,
                    &t64.d_logits,
                    &c.dz_bounds(&t64),
                    &format!("{what}: dloss/dlogits"),
                );
                if c.o.ce.label_smoothing > 0.0 {
                    assert_eq!(got.d_logits, fused.d_hidden, "{what}: dloss/dlogits");
                }
                let fwd = gpu
                    .logit_cross_entropy(&c.hidden, n, v, &c.targets, &c.o)
                    .unwrap();
                assert_eq!(bits(&fwd), bits(&got.loss), "{what}: forward alone");
                // f16 logits give the f32 bits of the same values.
                let h16: Vec<half::f16> =
                    c.hidden.iter().map(|&x| half::f16::from_f32(x)).collect();
                let h32: Vec<f32> = h16.iter().map(|x| x.to_f32()).collect();
                let a = gpu
                    .logit_cross_entropy_f16(&h16, n, v, &c.targets, &c.o)
                    .unwrap();
                let b = gpu
                    .logit_cross_entropy(&h32, n, v, &c.targets, &c.o)
                    .unwrap();
                assert_eq!(bits(&a), bits(&b), "{what}: f16");
            }
        }
    }
    // The encoder-level op with sentinel-filled outputs writes the blocking call's bits.
    let c = Case::random(310, 24, 36, 36, 2.0, false);
    let o = LinearCrossEntropy {
        z_loss: 1e-3,
        softcap: Some(10.0),
        ..Default::default()
    };
    let op = LinearCrossEntropyOp::given_logits(gpu, 24, 36, &o, InputFormat::F32, true).unwrap();
    assert_eq!(
        op.output_names(),
        vec![
            "loss (f32)",
            "lse (f32, tokens)",
            "dloss/dlogits (f32, tokens × vocab)"
        ]
    );
    let t32: Vec<i32> = c.targets.iter().map(|&t| t as i32).collect();
    let logits = &c.hidden[..24 * 36];
    let r = record_with_sentinels(
        gpu,
        &op,
        &[bytemuck::cast_slice(logits), bytemuck::cast_slice(&t32)],
    );
    let blocking = gpu
        .logit_cross_entropy_with_grad(logits, 24, 36, &c.targets, &o)
        .unwrap();
    assert_eq!(bits(&r.values[0]), bits(&blocking.loss));
    assert_eq!(bits(&r.values[1]), bits(&blocking.lse));
    assert_eq!(bits(&r.values[2]), bits(&blocking.d_logits));
}

/// The plain op's arguments: PyTorch's cases (equal logits give ln C; with no z-loss and no
/// cap it is `Gpu::cross_entropy`, within the two kernels' bounds), empty batches, errors.
#[test]
fn given_logits_cases_and_errors() {
    let gpu = gpu();
    let o = LinearCrossEntropy::default();
    let loss = gpu
        .logit_cross_entropy(&[0.5; 8], 2, 4, &[1, 3], &o)
        .unwrap();
    assert!((f64::from(loss[0]) - 4f64.ln()).abs() < 8.0 * U * 4f64.ln());
    let mut rng = Rng(320);
    let x = rng.vec(40 * 30, -4.0, 4.0);
    let t: Vec<i64> = (0..40).map(|i| (i * 7 % 30) as i64).collect();
    let none = LinearCrossEntropy {
        ce: CrossEntropy {
            reduction: Reduction::None,
            ..Default::default()
        },
        ..Default::default()
    };
    let a = gpu.logit_cross_entropy(&x, 40, 30, &t, &none).unwrap();
    let b = gpu.cross_entropy(&x, 40, 30, &t, &none.ce).unwrap();
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        assert!(
            (p - q).abs() <= 64.0 * f32::EPSILON * q.abs().max(1.0),
            "row {i}: {p} {q}"
        );
    }
    // The soft cap bounds every logit: a huge logit's loss is that of a logit of `cap`.
    let capped = LinearCrossEntropy {
        softcap: Some(5.0),
        ..none.clone()
    };
    let huge = gpu
        .logit_cross_entropy(&[3e38, 0.0, -3e38], 1, 3, &[2], &capped)
        .unwrap();
    let want = (5f64.exp() + 1.0 + (-5f64).exp()).ln() + 5.0;
    assert!(
        (f64::from(huge[0]) - want).abs() < 1e-5,
        "{} {want}",
        huge[0]
    );
    // Empty batches: PyTorch's empty reductions.
    assert_eq!(
        gpu.logit_cross_entropy(&[], 0, 3, &[], &none).unwrap(),
        vec![]
    );
    let mean = gpu
        .logit_cross_entropy(&[], 0, 3, &[], &LinearCrossEntropy::default())
        .unwrap();
    assert!(mean.len() == 1 && mean[0].is_nan());
    // Errors, not panics.
    let e = gpu.logit_cross_entropy(&[], 1, 0, &[0], &o).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    let e = gpu
        .logit_cross_entropy(&x[1..], 40, 30, &t, &o)
        .unwrap_err();
    assert!(
        matches!(e, Error::InputLength { what: "logits", .. }),
        "{e}"
    );
    let e = gpu
        .logit_cross_entropy(&x, 40, 30, &t[1..], &o)
        .unwrap_err();
    assert!(matches!(e, Error::InputLength { .. }), "{e}");
    let mut bad_t = t.clone();
    bad_t[3] = 30;
    assert!(gpu.logit_cross_entropy(&x, 40, 30, &bad_t, &o).is_err());
    for bad in [
        LinearCrossEntropy {
            z_loss: -1.0,
            ..Default::default()
        },
        LinearCrossEntropy {
            softcap: Some(0.0),
            ..Default::default()
        },
    ] {
        let e = gpu.logit_cross_entropy(&x, 40, 30, &t, &bad).unwrap_err();
        assert!(matches!(e, Error::Value(_)), "{e}");
    }
}
