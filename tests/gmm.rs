//! Gaussian mixtures on whatever adapter `Gpu::new()` finds: scikit-learn's `score_samples`
//! and log-responsibilities against an f64 oracle of the same f32 parameters, with bounds
//! written as formulas; data far from the origin; special values; invalid parameters; the
//! encoder-level op.

mod common;

use common::*;
use logdomain::{Covariance, Error, Gmm, GmmOp, GmmOutput, Gpu, SENTINEL_BITS};
use wgpu::util::DeviceExt;

fn f(x: f32) -> f64 {
    f64::from(x)
}

/// The f64 log-joint `ln w_k + ln N(x | μ_k, Σ_k)` of every point and component, and the
/// bound on the f32 kernel's error for each: the constant's rounding, and for the quadratic
/// form q the rounding of each difference, product and square (6u per term) and of the
/// sequential sum over dims (d·u), or for full covariances 2(d + 2)·u·|y_j|·Σ_i|t_ij| + u·y_j²
/// per output coordinate y_j = Σ_i t_ij.
fn oracle(points: &[f32], n: usize, d: usize, gmm: &Gmm) -> (Vec<f64>, Vec<f64>) {
    let k = gmm.weights.len();
    let ln2pi = (2.0 * std::f64::consts::PI).ln();
    let mut joint = Vec::with_capacity(n * k);
    let mut err = Vec::with_capacity(n * k);
    for p in 0..n {
        let x = &points[p * d..(p + 1) * d];
        for c in 0..k {
            if x.iter().any(|v| !v.is_finite()) {
                joint.push(f64::NAN);
                err.push(0.0);
                continue;
            }
            if gmm.weights[c] == 0.0 {
                joint.push(f64::NEG_INFINITY);
                err.push(0.0);
                continue;
            }
            let mu = &gmm.means[c * d..(c + 1) * d];
            let diff: Vec<f64> = (0..d).map(|i| f(x[i]) - f(mu[i])).collect();
            let (q, log_det, qerr) = match &gmm.covariance {
                Covariance::Diag(v) | Covariance::Spherical(v) => {
                    let pc: Vec<f64> = (0..d)
                        .map(|i| {
                            let var = if v.len() == k { v[c] } else { v[c * d + i] };
                            1.0 / f(var).sqrt()
                        })
                        .collect();
                    let q: f64 = (0..d).map(|i| (diff[i] * pc[i]).powi(2)).sum();
                    let ld: f64 = pc.iter().map(|p| p.ln()).sum();
                    (q, ld, (d as f64 + 6.0) * U * q)
                }
                Covariance::Full(pm) | Covariance::Tied(pm) => {
                    // A tied factor is every component's.
                    let base = if pm.len() == d * d { 0 } else { c * d * d };
                    let at = |i: usize, j: usize| f(pm[base + i * d + j]);
                    let mut q = 0.0;
                    let mut qerr = 0.0;
                    for j in 0..d {
                        let y: f64 = (0..d).map(|i| diff[i] * at(i, j)).sum();
                        let s: f64 = (0..d).map(|i| (diff[i] * at(i, j)).abs()).sum();
                        q += y * y;
                        qerr += 2.0 * (d as f64 + 2.0) * U * y.abs() * s + U * y * y;
                    }
                    let ld: f64 = (0..d).map(|i| at(i, i).ln()).sum();
                    (q, ld, qerr + d as f64 * U * q)
                }
            };
            let constant = f(gmm.weights[c]).ln() + log_det - 0.5 * d as f64 * ln2pi;
            let v = constant - 0.5 * q;
            if v < -f64::from(f32::MAX) {
                // Beyond f32's range: the f32 value is −inf.
                joint.push(f64::NEG_INFINITY);
                err.push(0.0);
                continue;
            }
            joint.push(v);
            err.push(U * constant.abs() + 0.5 * qerr + U * v.abs() + 2.0 * U);
        }
    }
    (joint, err)
}

fn lse64(row: &[f64]) -> f64 {
    if row.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

fn check_gmm(gpu: &Gpu, points: &[f32], n: usize, d: usize, gmm: &Gmm, what: &str) {
    let k = gmm.weights.len();
    let (joint, err) = oracle(points, n, d, gmm);
    let score = gpu.gmm_score_samples(points, n, d, gmm).unwrap();
    let resp = gpu.gmm_log_responsibilities(points, n, d, gmm).unwrap();
    assert_eq!((score.len(), resp.len()), (n, n * k), "{what}");
    for p in 0..n {
        let row = &joint[p * k..(p + 1) * k];
        let row_err = err[p * k..(p + 1) * k].iter().cloned().fold(0.0, f64::max);
        let lse = lse64(row);
        let row32: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        let t = truth(&row32);
        // lse is 1-Lipschitz in the max norm: the inputs' error, their rounding to f32 (½ ulp
        // each), then log-sum-exp's own contract.
        let rounding = row
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| 0.5 * ulp(v))
            .fold(0.0, f64::max);
        let bound = row_err + rounding + lse_bound(&t);
        let g = score[p];
        assert!(g.to_bits() != SENTINEL_BITS, "{what}: point {p} unwritten");
        if lse.is_nan() {
            assert!(g.is_nan(), "{what}: point {p}: {g}");
            continue;
        }
        if lse == f64::NEG_INFINITY {
            // Every component −inf (q overflowed f32): log_softmax of such a row is NaN.
            assert_eq!(g, f32::NEG_INFINITY, "{what}: point {p}");
            assert!(
                resp[p * k..(p + 1) * k]
                    .iter()
                    .all(|r| r.is_nan() && r.to_bits() != SENTINEL_BITS)
            );
            continue;
        }
        assert!(
            (f(g) - lse).abs() <= bound,
            "{what}: point {p}: score {g} vs {lse} ± {bound:e}"
        );
        for c in 0..k {
            let r = resp[p * k + c];
            let want = row[c] - lse;
            if want == f64::NEG_INFINITY {
                assert_eq!(r, f32::NEG_INFINITY, "{what}: point {p} component {c}");
                continue;
            }
            let b = err[p * k + c] + bound + U * ((row[c] - t.max).abs() + want.abs());
            assert!(
                (f(r) - want).abs() <= b,
                "{what}: point {p} component {c}: {r} vs {want} ± {b:e}"
            );
        }
    }
}

/// A random mixture: weights summing to 1, means in [lo, hi), and covariances of the kind.
fn mixture(rng: &mut Rng, k: usize, d: usize, kind: &str, lo: f32, hi: f32) -> Gmm {
    let raw = rng.vec(k, 0.2, 1.0);
    let total: f32 = raw.iter().sum();
    let mut weights: Vec<f32> = raw.iter().map(|w| w / total).collect();
    let excess: f32 = weights.iter().sum::<f32>() - 1.0;
    weights[0] -= excess;
    let means = rng.vec(k * d, lo, hi);
    let covariance = match kind {
        "diag" => Covariance::Diag(rng.vec(k * d, 0.3, 3.0)),
        "spherical" => Covariance::Spherical(rng.vec(k, 0.3, 3.0)),
        "full" | "dense" | "tied" => {
            let factors = if kind == "tied" { 1 } else { k };
            let mut p = vec![0f32; factors * d * d];
            for c in 0..factors {
                for i in 0..d {
                    for j in 0..d {
                        let v = if i == j {
                            rng.uniform(0.5, 1.5)
                        } else if i < j || kind == "dense" {
                            rng.uniform(-0.3, 0.3)
                        } else {
                            0.0
                        };
                        p[c * d * d + i * d + j] = v;
                    }
                }
            }
            if kind == "tied" {
                Covariance::Tied(p)
            } else {
                Covariance::Full(p)
            }
        }
        _ => unreachable!(),
    };
    Gmm {
        weights,
        means,
        covariance,
    }
}

#[test]
fn score_samples_and_responsibilities_on_every_covariance() {
    let gpu = gpu();
    let mut rng = Rng(31);
    for kind in ["diag", "spherical", "full", "dense", "tied"] {
        for (n, k, d) in [(1, 1, 1), (1000, 3, 4), (257, 16, 16), (70_000, 2, 3)] {
            let gmm = mixture(&mut rng, k, d, kind, -3.0, 3.0);
            let points = rng.vec(n * d, -5.0, 5.0);
            let what = format!("{kind} n={n} k={k} d={d}");
            check_gmm(gpu, &points, n, d, &gmm, &what);
            if let Covariance::Tied(p) = &gmm.covariance {
                // Tied is full with the shared factor in every component, bit for bit.
                let full = Gmm {
                    covariance: Covariance::Full(p.repeat(k)),
                    ..gmm.clone()
                };
                let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(gpu.gmm_score_samples(&points, n, d, &gmm).unwrap()),
                    bits(gpu.gmm_score_samples(&points, n, d, &full).unwrap()),
                    "{what}"
                );
            }
        }
    }
}

/// k = 64 components of 64 dimensions with full covariances: each point's components are
/// split over several invocations (software adapters end long loops).
#[test]
fn sixty_four_components_of_sixty_four_dimensions() {
    let gpu = gpu();
    let mut rng = Rng(32);
    let (n, k, d) = (100, 64, 64);
    for kind in ["diag", "full"] {
        let gmm = mixture(&mut rng, k, d, kind, -1.0, 1.0);
        let points = rng.vec(n * d, -2.0, 2.0);
        check_gmm(gpu, &points, n, d, &gmm, &format!("{kind} 64x64"));
    }
    // Past 64 dimensions the point is read from memory at each use, and a dense 70 × 70 factor
    // (4,971 words a component) is read from a storage binding instead of a uniform window.
    let (n, k, d) = (40, 3, 70);
    for kind in ["diag", "full", "dense"] {
        let gmm = mixture(&mut rng, k, d, kind, -1.0, 1.0);
        let points = rng.vec(n * d, -2.0, 2.0);
        check_gmm(gpu, &points, n, d, &gmm, &format!("{kind} d=70"));
    }
}

/// Data and means near 10^4 with unit-scale spread: the difference is taken first, so the
/// result is as accurate as near the origin. The expanded form Σx²τ − 2Σxμτ + Σμ²τ in f32
/// (scikit-learn's for 'diag') misses by far more than the bound.
#[test]
fn data_far_from_the_origin() {
    let gpu = gpu();
    let mut rng = Rng(33);
    let (n, k, d) = (500, 4, 8);
    let mut gmm = mixture(&mut rng, k, d, "diag", -2.0, 2.0);
    gmm.means.iter_mut().for_each(|m| *m += 1e4);
    let points: Vec<f32> = rng.vec(n * d, -3.0, 3.0).iter().map(|v| v + 1e4).collect();
    check_gmm(gpu, &points, n, d, &gmm, "far from origin");
    let Covariance::Diag(var) = &gmm.covariance else {
        unreachable!()
    };
    let (joint, err) = oracle(&points, n, d, &gmm);
    let mut worst = 0f64;
    let mut allowed = 0f64;
    for p in 0..n {
        for c in 0..k {
            let (mut x2, mut xm, mut m2) = (0f32, 0f32, 0f32);
            for i in 0..d {
                let tau = 1.0 / var[c * d + i];
                let (x, m) = (points[p * d + i], gmm.means[c * d + i]);
                x2 += x * x * tau;
                xm += x * m * tau;
                m2 += m * m * tau;
            }
            let q_expanded = f(x2 - 2.0 * xm + m2);
            let q_true = -2.0
                * (joint[p * k + c]
                    - (f(gmm.weights[c]).ln()
                        - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln()
                        - 0.5 * (0..d).map(|i| f(var[c * d + i]).ln()).sum::<f64>()));
            worst = worst.max((q_expanded - q_true).abs());
            allowed = allowed.max(2.0 * err[p * k + c]);
        }
    }
    assert!(
        worst > 100.0 * allowed,
        "the expanded form should fail here: error {worst} vs bound {allowed}"
    );
}

#[test]
fn special_points_and_zero_weights() {
    let gpu = gpu();
    let gmm = Gmm {
        weights: vec![0.0, 0.75, 0.25],
        means: vec![0.0, 0.0, 1.0, 1.0, -1.0, 2.0],
        covariance: Covariance::Diag(vec![1.0, 1.0, 0.5, 2.0, 1.0, 1.0]),
    };
    let points = [
        0.0,
        0.0,
        f32::NAN,
        1.0,
        f32::INFINITY,
        0.0,
        1e30,
        1e30,
        3.0,
        -4.0,
    ];
    check_gmm(gpu, &points, 5, 2, &gmm, "special");
    let score = gpu.gmm_score_samples(&points, 5, 2, &gmm).unwrap();
    assert!(score[1].is_nan() && score[2].is_nan());
    // (1e30)² overflows f32: log p is -inf, as the f64 value (−1e60) rounds in f32.
    assert_eq!(score[3], f32::NEG_INFINITY);
    let resp = gpu.gmm_log_responsibilities(&points, 5, 2, &gmm).unwrap();
    assert_eq!(resp[0], f32::NEG_INFINITY, "a zero-weight component");
    // A single component: every point's responsibility is 1.
    let one = Gmm {
        weights: vec![1.0],
        means: vec![5.0],
        covariance: Covariance::Spherical(vec![4.0]),
    };
    let r = gpu
        .gmm_log_responsibilities(&[0.0, 5.0, 9.0], 3, 1, &one)
        .unwrap();
    assert_eq!(r, vec![0.0; 3]);
    assert!(gpu.gmm_score_samples(&[], 0, 1, &one).unwrap().is_empty());
}

#[test]
fn invalid_parameters_are_errors() {
    let gpu = gpu();
    let good = Gmm {
        weights: vec![0.5, 0.5],
        means: vec![0.0, 1.0],
        covariance: Covariance::Diag(vec![1.0, 1.0]),
    };
    let x = [0.0f32, 1.0];
    assert!(gpu.gmm_score_samples(&x, 2, 1, &good).is_ok());
    let cases: Vec<(Gmm, &str)> = vec![
        (
            Gmm {
                weights: vec![1.5, -0.5],
                ..good.clone()
            },
            "≥ 0",
        ),
        (
            Gmm {
                weights: vec![0.5, 0.4],
                ..good.clone()
            },
            "sum to 1",
        ),
        (
            Gmm {
                weights: vec![],
                means: vec![],
                ..good.clone()
            },
            "at least one",
        ),
        (
            Gmm {
                covariance: Covariance::Diag(vec![1.0, 0.0]),
                ..good.clone()
            },
            "> 0",
        ),
        (
            Gmm {
                covariance: Covariance::Spherical(vec![1.0, -2.0]),
                ..good.clone()
            },
            "> 0",
        ),
        (
            Gmm {
                covariance: Covariance::Full(vec![1.0, -1.0]),
                ..good.clone()
            },
            "diagonal",
        ),
        (
            Gmm {
                means: vec![0.0, f32::NAN],
                ..good.clone()
            },
            "finite",
        ),
    ];
    for (gmm, needle) in cases {
        let e = gpu.gmm_score_samples(&x, 2, 1, &gmm).unwrap_err();
        assert!(matches!(e, Error::Value(_)), "{e:?}");
        assert!(
            e.to_string().contains(needle),
            "{e} should mention {needle}"
        );
    }
    for covariance in [
        Covariance::Diag(vec![1.0; 3]),
        // A tied factor is dims × dims, not k × dims × dims.
        Covariance::Tied(vec![1.0; 2]),
    ] {
        let wrong_len = Gmm {
            covariance,
            ..good.clone()
        };
        assert!(matches!(
            gpu.gmm_score_samples(&x, 2, 1, &wrong_len),
            Err(Error::InputLength { .. })
        ));
    }
    assert!(matches!(
        gpu.gmm_score_samples(&x, 3, 1, &good),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        gpu.gmm_score_samples(&[], 2, 0, &good),
        Err(Error::Shape(_))
    ));
}

#[test]
fn encoder_level_op_matches_the_blocking_call() {
    let (device, queue) = own_device(|_| {});
    let gpu = Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    let mut rng = Rng(34);
    let (n, k, d) = (3000, 5, 6);
    let gmm = mixture(&mut rng, k, d, "full", -2.0, 2.0);
    let points = rng.vec(n * d, -3.0, 3.0);
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let make = |bytes: &[u8]| {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage,
            })
    };
    let x = make(bytemuck::cast_slice(&points));
    let score_op = GmmOp::new(&gpu, n, d, &gmm, GmmOutput::ScoreSamples).unwrap();
    let resp_op = GmmOp::new(&gpu, n, d, &gmm, GmmOutput::LogResponsibilities).unwrap();
    assert_eq!((score_op.output_len(), resp_op.output_len()), (n, n * k));
    let s = make(bytemuck::cast_slice(&vec![SENTINEL_BITS; n]));
    let r = make(bytemuck::cast_slice(&vec![SENTINEL_BITS; n * k]));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    score_op.record(&mut encoder, &x, &s).unwrap();
    resp_op.record(&mut encoder, &x, &r).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(gpu.read_f32(&s, n as u64 * 4).unwrap()),
        bits(gpu.gmm_score_samples(&points, n, d, &gmm).unwrap())
    );
    assert_eq!(
        bits(gpu.read_f32(&r, (n * k) as u64 * 4).unwrap()),
        bits(gpu.gmm_log_responsibilities(&points, n, d, &gmm).unwrap())
    );
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    assert!(matches!(
        score_op.record(&mut encoder, &x, &x),
        Err(Error::Buffer(_))
    ));
    let small = make(&[0u8; 8]);
    assert!(matches!(
        score_op.record(&mut encoder, &x, &small),
        Err(Error::Buffer(_))
    ));
}

#[test]
fn cpu_reference_agrees_with_the_oracle() {
    use logdomain::reference::gmm as cpu;
    let mut rng = Rng(35);
    let (n, k, d) = (200, 4, 5);
    for kind in ["diag", "spherical", "full", "tied"] {
        let gmm = mixture(&mut rng, k, d, kind, -2.0, 2.0);
        let points = rng.vec(n * d, -3.0, 3.0);
        let (joint, err) = oracle(&points, n, d, &gmm);
        let got = cpu::log_joint(&points, n, d, &gmm);
        for i in 0..n * k {
            assert!((f(got[i]) - joint[i]).abs() <= err[i], "{kind} {i}");
        }
        let score = cpu::score_samples(&points, n, d, &gmm);
        assert_eq!(score.len(), n);
    }
}

// ---- Gradients and sufficient statistics (diagonal mixtures) --------------------------------

use logdomain::{GmmGradients, GmmReduceOp, GmmReduction, GmmSufficientStats};

fn depth(n: usize) -> f64 {
    let n = n.max(1) as f64;
    n.log2().ceil() + n.log(64.0).ceil() + 1.0
}

/// The f64 total log-likelihood of a diagonal mixture with free weights w (not renormalised).
fn total_ll64(points: &[f64], d: usize, w: &[f64], mu: &[f64], var: &[f64]) -> f64 {
    let k = w.len();
    points
        .chunks(d)
        .map(|x| {
            let row: Vec<f64> = (0..k)
                .map(|c| {
                    let mut v = w[c].ln();
                    for j in 0..d {
                        let s2 = var[c * d + j];
                        v -= 0.5
                            * ((2.0 * std::f64::consts::PI * s2).ln()
                                + (x[j] - mu[c * d + j]).powi(2) / s2);
                    }
                    v
                })
                .collect();
            lse64(&row)
        })
        .sum()
}

/// The op's packed sums in f64 from the same f32 inputs, with a bound per value: each term's
/// responsibility r = exp(L − log p) carries the log-joint's error (the oracle's) and log p's
/// (the row's largest plus 2u(|log p| + ln k + 2)), so a relative e_r = err_L + err_lp + 2u;
/// the terms add their own rounding (r·x 2u, r·x² 3u, r(x − μ)/σ² 5u, r/w 2u, and the variance
/// gradient ½ r τ ((x − μ)² τ + 1)·(e_r + 8u)), and each sum depth(n)·u·Σ|t|.
fn moments64(
    points: &[f32],
    n: usize,
    d: usize,
    gmm: &Gmm,
    kind: GmmReduction,
) -> (Vec<f64>, Vec<f64>) {
    let k = gmm.weights.len();
    let grad = kind == GmmReduction::Gradients;
    let centered = matches!(
        kind,
        GmmReduction::CenteredStats | GmmReduction::CenteredScatter
    );
    let scatter = kind == GmmReduction::CenteredScatter;
    let var = match &gmm.covariance {
        Covariance::Diag(var) => var.clone(),
        _ => vec![1.0; k * d],
    };
    let (joint, err) = oracle(points, n, d, gmm);
    let mut lp = Vec::with_capacity(n);
    let mut lp_err = Vec::with_capacity(n);
    for p in 0..n {
        let row = &joint[p * k..(p + 1) * k];
        let l = lse64(row);
        let row_err = err[p * k..(p + 1) * k].iter().cloned().fold(0.0, f64::max);
        lp.push(l);
        lp_err.push(row_err + 2.0 * U * (l.abs() + (k as f64).ln() + 2.0));
    }
    // (sum, Σ|t|, Σ term bounds)
    let mut first = vec![(0.0, 0.0, 0.0); k * d];
    let mut second = vec![(0.0, 0.0, 0.0); k * d];
    let mut per_comp = vec![(0.0, 0.0, 0.0); k];
    let pairs = if scatter { d * (d - 1) / 2 } else { 0 };
    let mut cross = vec![(0.0, 0.0, 0.0); k * pairs];
    let add = |acc: &mut (f64, f64, f64), t: f64, b: f64| {
        acc.0 += t;
        acc.1 += t.abs();
        acc.2 += b;
    };
    for p in 0..n {
        for c in 0..k {
            let r = (joint[p * k + c] - lp[p]).exp();
            let e_r = err[p * k + c] + lp_err[p] + 2.0 * U;
            let wc = f(gmm.weights[c]);
            if grad {
                add(&mut per_comp[c], r / wc, r / wc * (e_r + 2.0 * U));
            } else {
                add(&mut per_comp[c], r, r * e_r);
            }
            for j in 0..d {
                let x = f(points[p * d + j]);
                let i = c * d + j;
                if grad {
                    let tau = 1.0 / f(var[i]);
                    let dev = x - f(gmm.means[i]);
                    let s = r * dev * tau;
                    add(&mut first[i], s, s.abs() * (e_r + 5.0 * U));
                    let w = 0.5 * r * (dev * dev * tau - 1.0) * tau;
                    let wb = 0.5 * r * tau * (dev * dev * tau + 1.0) * (e_r + 8.0 * U);
                    add(&mut second[i], w, wb);
                } else if centered {
                    let dev = x - f(gmm.means[i]);
                    add(&mut first[i], r * dev, (r * dev).abs() * (e_r + 3.0 * U));
                    add(
                        &mut second[i],
                        r * dev * dev,
                        r * dev * dev * (e_r + 5.0 * U),
                    );
                } else {
                    add(&mut first[i], r * x, (r * x).abs() * (e_r + 2.0 * U));
                    add(&mut second[i], r * x * x, r * x * x * (e_r + 3.0 * U));
                }
            }
            let mut pair = 0;
            for a in 0..d * usize::from(scatter) {
                for b in a + 1..d {
                    let da = f(points[p * d + a]) - f(gmm.means[c * d + a]);
                    let db = f(points[p * d + b]) - f(gmm.means[c * d + b]);
                    let t = r * da * db;
                    add(&mut cross[c * pairs + pair], t, t.abs() * (e_r + 5.0 * U));
                    pair += 1;
                }
            }
        }
    }
    let dn = depth(n);
    let total: f64 = lp.iter().sum();
    let mut want = vec![total];
    let mut bound =
        vec![lp_err.iter().sum::<f64>() + dn * U * lp.iter().map(|v| v.abs()).sum::<f64>()];
    // The centered sums add each chunk's 64 terms one after another (up to 63 roundings per
    // term) before the pairwise levels.
    let chunk_depth = if centered { 63.0 } else { 0.0 };
    for acc in first.iter().chain(&per_comp).chain(&cross).chain(&second) {
        want.push(acc.0);
        bound.push(acc.2 + (dn + chunk_depth) * U * acc.1 + U * acc.0.abs());
    }
    (want, bound)
}

#[test]
fn f64_mixture_gradients_match_central_differences() {
    let mut rng = Rng(61);
    let (n, k, d) = (20, 3, 2);
    let gmm = mixture(&mut rng, k, d, "diag", -2.0, 2.0);
    let points = rng.vec(n * d, -3.0, 3.0);
    let x: Vec<f64> = points.iter().map(|&v| f(v)).collect();
    let Covariance::Diag(var) = &gmm.covariance else {
        unreachable!()
    };
    let w: Vec<f64> = gmm.weights.iter().map(|&v| f(v)).collect();
    let mu: Vec<f64> = gmm.means.iter().map(|&v| f(v)).collect();
    let s2: Vec<f64> = var.iter().map(|&v| f(v)).collect();
    let (want, _) = moments64(&points, n, d, &gmm, GmmReduction::Gradients);
    let kd = k * d;
    let fd = |which: usize, i: usize| {
        let h = 1e-6;
        let mut p = [w.clone(), mu.clone(), s2.clone()];
        p[which][i] += h;
        let up = total_ll64(&x, d, &p[0], &p[1], &p[2]);
        p[which][i] -= 2.0 * h;
        let down = total_ll64(&x, d, &p[0], &p[1], &p[2]);
        (up - down) / (2.0 * h)
    };
    let close = |a: f64, b: f64, what: String| {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-3),
            "{what}: formula {a}, finite difference {b}"
        )
    };
    close(
        want[0],
        total_ll64(&x, d, &w, &mu, &s2),
        "log-likelihood".into(),
    );
    for c in 0..k {
        close(want[1 + kd + c], fd(0, c), format!("d/dw[{c}]"));
    }
    for i in 0..kd {
        close(want[1 + i], fd(1, i), format!("d/dmu[{i}]"));
        close(want[1 + kd + k + i], fd(2, i), format!("d/dvar[{i}]"));
    }
}

const KINDS: [GmmReduction; 4] = [
    GmmReduction::Gradients,
    GmmReduction::SufficientStats,
    GmmReduction::CenteredStats,
    GmmReduction::CenteredScatter,
];

fn check_moments(gpu: &Gpu, points: &[f32], n: usize, d: usize, gmm: &Gmm, what: &str) {
    check_moments_of(gpu, points, n, d, gmm, &KINDS, what)
}

fn check_moments_of(
    gpu: &Gpu,
    points: &[f32],
    n: usize,
    d: usize,
    gmm: &Gmm,
    kinds: &[GmmReduction],
    what: &str,
) {
    let k = gmm.weights.len();
    let diag = matches!(gmm.covariance, Covariance::Diag(_));
    for &kind in kinds
        .iter()
        .filter(|&&kind| diag || kind != GmmReduction::Gradients)
    {
        let packed: Vec<f32> = match kind {
            GmmReduction::Gradients => {
                let g = gpu.gmm_gradients(points, n, d, gmm).unwrap();
                let mut v = vec![g.log_likelihood];
                v.extend(g.means.iter().chain(&g.weights).chain(&g.variances));
                v
            }
            GmmReduction::SufficientStats => {
                let s = gpu.gmm_sufficient_stats(points, n, d, gmm).unwrap();
                let mut v = vec![s.log_likelihood];
                v.extend(s.sum_x.iter().chain(&s.resp_sums).chain(&s.sum_x2));
                v
            }
            _ => {
                let scatter = kind == GmmReduction::CenteredScatter;
                let s = gpu.gmm_centered_stats(points, n, d, gmm, scatter).unwrap();
                assert_eq!(s.cross.len(), if scatter { k * d * (d - 1) / 2 } else { 0 });
                let mut v = vec![s.log_likelihood];
                v.extend(
                    s.sum_dev
                        .iter()
                        .chain(&s.resp_sums)
                        .chain(&s.cross)
                        .chain(&s.sum_dev2),
                );
                v
            }
        };
        let pairs = if kind == GmmReduction::CenteredScatter {
            d * (d - 1) / 2
        } else {
            0
        };
        assert_eq!(packed.len(), 1 + k + 2 * k * d + k * pairs, "{what}");
        let (want, bound) = moments64(points, n, d, gmm, kind);
        let one_pass = kind == GmmReduction::CenteredStats
            && GmmReduceOp::new(gpu, n, d, gmm, kind).unwrap().one_pass();
        let cpu = if one_pass {
            logdomain::reference::gmm::moments_one_pass(points, n, d, gmm)
        } else {
            logdomain::reference::gmm::moments(points, n, d, gmm, kind)
        };
        for (i, ((&g, &w), &b)) in packed.iter().zip(&want).zip(&bound).enumerate() {
            assert!(
                g.to_bits() != SENTINEL_BITS && (f(g) - w).abs() <= b,
                "{what} {kind:?} [{i}]: got {g:e}, want {w:e} ± {b:e}"
            );
            assert!(
                (f(g) - f(cpu[i])).abs() <= 2.0 * b,
                "{what} {kind:?} [{i}]: GPU {g:e}, CPU mirror {:e}",
                cpu[i]
            );
        }
    }
}

/// The one-pass E-step (`gmm_estep_tiled`): taken for diagonal and spherical mixtures of up to
/// 16 components and 16 dimensions on devices with 32 KiB of workgroup memory (and no others),
/// its sums within the bound of the f64 sums
/// and of the mirror that orders them as it does, at tails of chunks and component counts that
/// are not multiples of 4, far from the origin, and recorded into a caller's sentinel-filled
/// buffer; a point with a NaN coordinate makes every sum NaN, as in the mirror.
#[test]
fn one_pass_estep() {
    let gpu = gpu();
    let mut rng = Rng(63);
    let kind = GmmReduction::CenteredStats;
    for (n, k, d, cov, shift) in [
        (70_001, 16, 16, "diag", 0.0),
        (1000, 5, 3, "diag", 0.0),
        (513, 7, 13, "spherical", 0.0),
        (3, 1, 1, "diag", 0.0),
        (2_000, 9, 6, "diag", 1000.0),
    ] {
        let mut gmm = mixture(&mut rng, k, d, cov, -2.0, 2.0);
        gmm.means.iter_mut().for_each(|m| *m += shift);
        let points: Vec<f32> = rng
            .vec(n * d, -3.0, 3.0)
            .iter()
            .map(|v| v + shift)
            .collect();
        let op = GmmReduceOp::new(gpu, n, d, &gmm, kind).unwrap();
        // Taken wherever the device has the workgroup memory (the software adapters do).
        let room = gpu.device().limits().max_compute_workgroup_storage_size >= 32 * 1024;
        assert_eq!(op.one_pass(), room, "n {n} k {k} d {d} {cov}");
        let what = format!("one pass n {n} k {k} d {d} {cov}");
        check_moments_of(gpu, &points, n, d, &gmm, &[kind], &what);
        let recorded = recorded(gpu, &points, op.output_len(), |e, x, y| op.record(e, x, y));
        let blocking = gpu.gmm_centered_stats(&points, n, d, &gmm, false).unwrap();
        let mut packed = vec![blocking.log_likelihood];
        packed.extend(
            blocking
                .sum_dev
                .iter()
                .chain(&blocking.resp_sums)
                .chain(&blocking.sum_dev2),
        );
        assert_eq!(
            recorded.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            packed.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{what}: recorded and blocking"
        );
    }
    // A NaN coordinate.
    let (n, k, d) = (600, 4, 3);
    let gmm = mixture(&mut rng, k, d, "diag", -2.0, 2.0);
    let mut points = rng.vec(n * d, -3.0, 3.0);
    points[301 * d + 1] = f32::NAN;
    let got = gpu.gmm_centered_stats(&points, n, d, &gmm, false).unwrap();
    let want = logdomain::reference::gmm::moments_one_pass(&points, n, d, &gmm);
    assert!(want.iter().all(|v| v.is_nan()));
    assert!(got.log_likelihood.is_nan());
    assert!(
        got.sum_dev
            .iter()
            .chain(&got.resp_sums)
            .chain(&got.sum_dev2)
            .all(|v| v.is_nan())
    );
    // Not taken: 17 components, 17 dimensions, full covariances, the other sums.
    for (k, d, cov, kind) in [
        (17, 2, "diag", GmmReduction::CenteredStats),
        (2, 17, "diag", GmmReduction::CenteredStats),
        (3, 4, "full", GmmReduction::CenteredStats),
        (3, 4, "diag", GmmReduction::SufficientStats),
        (3, 4, "diag", GmmReduction::CenteredScatter),
    ] {
        let gmm = mixture(&mut rng, k, d, cov, -2.0, 2.0);
        let op = GmmReduceOp::new(gpu, 100, d, &gmm, kind).unwrap();
        assert!(!op.one_pass(), "k {k} d {d} {cov} {kind:?}");
    }
}

#[test]
fn mixture_gradients_and_sufficient_statistics() {
    let gpu = gpu();
    let mut rng = Rng(62);
    for (n, k, d) in [(1, 1, 1), (1000, 3, 4), (70_001, 2, 3), (500, 40, 120)] {
        let gmm = mixture(&mut rng, k, d, "diag", -2.0, 2.0);
        let points = rng.vec(n * d, -3.0, 3.0);
        check_moments(gpu, &points, n, d, &gmm, &format!("n {n} k {k} d {d}"));
    }
    // The centered sums for spherical and full mixtures, far from the origin (where the
    // uncentered Σ r x² − N μ² would cancel).
    for (n, k, d, cov) in [
        (700, 3, 5, "full"),
        (300, 4, 2, "spherical"),
        (129, 2, 1, "full"),
    ] {
        let mut gmm = mixture(&mut rng, k, d, cov, -2.0, 2.0);
        gmm.means.iter_mut().for_each(|m| *m += 1000.0);
        let points: Vec<f32> = rng
            .vec(n * d, -3.0, 3.0)
            .iter()
            .map(|v| v + 1000.0)
            .collect();
        check_moments(
            gpu,
            &points,
            n,
            d,
            &gmm,
            &format!("{cov} n {n} k {k} d {d}"),
        );
    }
    // Enough work that on GL a group's rows of sums are split across two dispatches by the
    // dispatch budget (docs/gl-context.md): 2,046 rows of 17,000 points for the moments (the
    // gradients' kernel too), 248 tiles for the centered sums; 192 block pairs of 24,000 points
    // for the scatter. Elsewhere each is one dispatch.
    let (n, k, d) = (17_000, 62, 32);
    let gmm = mixture(&mut rng, k, d, "diag", -2.0, 2.0);
    let points = rng.vec(n * d, -3.0, 3.0);
    check_moments_of(gpu, &points, n, d, &gmm, &KINDS[1..3], "split rows");
    let (n, k, d) = (24_000, 64, 8);
    let gmm = mixture(&mut rng, k, d, "diag", -2.0, 2.0);
    let points = rng.vec(n * d, -3.0, 3.0);
    check_moments_of(gpu, &points, n, d, &gmm, &KINDS[3..], "split scatter");
}

#[test]
fn mixture_sums_encoder_level_and_errors() {
    let (device, queue) = own_device(|_| {});
    let gpu = Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    let mut rng = Rng(63);
    let (n, k, d) = (3000, 4, 5);
    let gmm = mixture(&mut rng, k, d, "diag", -2.0, 2.0);
    let points = rng.vec(n * d, -3.0, 3.0);
    let blocking = gpu.gmm_sufficient_stats(&points, n, d, &gmm).unwrap();
    let op = GmmReduceOp::new(&gpu, n, d, &gmm, GmmReduction::SufficientStats).unwrap();
    assert_eq!((op.components(), op.dims()), (k, d));
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let input = gpu
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&points),
            usage,
        });
    let output = gpu
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&vec![SENTINEL_BITS; op.output_len()]),
            usage,
        });
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record(&mut encoder, &input, &output).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let got = gpu.read_f32(&output, op.output_len() as u64 * 4).unwrap();
    assert_eq!(
        GmmSufficientStats::from_packed(&got, k, d).unwrap(),
        blocking
    );
    // The responsibilities of every point sum to 1: so do the N_k, to n.
    let total: f64 = blocking.resp_sums.iter().map(|&v| f(v)).sum();
    assert!((total - n as f64).abs() <= 1e-4 * n as f64, "{total}");
    // A zero weight: its statistics are 0; its gradient is an error.
    let mut zero = gmm.clone();
    zero.weights[0] += zero.weights[1];
    zero.weights[1] = 0.0;
    let s = gpu.gmm_sufficient_stats(&points, n, d, &zero).unwrap();
    assert_eq!(s.resp_sums[1], 0.0);
    assert!(matches!(
        gpu.gmm_gradients(&points, n, d, &zero),
        Err(Error::Value(_))
    ));
    let full = mixture(&mut rng, k, d, "full", -2.0, 2.0);
    assert!(matches!(
        gpu.gmm_gradients(&points, n, d, &full),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        gpu.gmm_sufficient_stats(&points[1..], n, d, &gmm),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        GmmGradients::from_packed(&got[1..], k, d),
        Err(Error::InputLength { .. })
    ));
}

/// f16 points: bit for bit the f32 evaluation of the same values converted to f32, for every
/// covariance, odd dimensions (points that start mid-word), points held in registers or read
/// from memory (d = 70), special coordinates, fused and unfused outputs, windows of a small
/// binding; and the encoder-level op.
#[test]
fn f16_points_give_the_f32_bits() {
    let small = small_gpu();
    let mut rng = Rng(1617);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (gpu, kind, n, k, d) in [
        (gpu(), "diag", 1001, 16, 3),
        (gpu(), "spherical", 257, 5, 16),
        (gpu(), "full", 99, 20, 7),
        (gpu(), "dense", 40, 3, 70),
        (gpu(), "diag", 33, 80, 5),
        (&small, "diag", 9_001, 4, 3),
        (&small, "full", 3_001, 3, 5),
    ] {
        let gmm = mixture(&mut rng, k, d, kind, -3.0, 3.0);
        let mut points: Vec<half::f16> = (0..n * d)
            .map(|_| half::f16::from_f32(rng.uniform(-5.0, 5.0)))
            .collect();
        // Points 1, 68, 135, 202, 269 (mod n): every slot of a 4 × 64-point tile of
        // gmm_score_tiled.
        for (i, v) in [f32::NAN, f32::INFINITY, 65504.0, 6e-8, -0.0]
            .iter()
            .enumerate()
        {
            points[((i * 67 + 1) % n) * d + i % d] = half::f16::from_f32(*v);
        }
        let p32: Vec<f32> = points.iter().map(|h| h.to_f32()).collect();
        let what = format!("{kind} n={n} k={k} d={d}");
        if n == 1001 {
            // The values themselves against the oracle, special points included.
            check_gmm(gpu, &p32, n, d, &gmm, &what);
        }
        assert_eq!(
            bits(&gpu.gmm_score_samples_f16(&points, n, d, &gmm).unwrap()),
            bits(&gpu.gmm_score_samples(&p32, n, d, &gmm).unwrap()),
            "score_samples {what}"
        );
        assert_eq!(
            bits(
                &gpu.gmm_log_responsibilities_f16(&points, n, d, &gmm)
                    .unwrap()
            ),
            bits(&gpu.gmm_log_responsibilities(&p32, n, d, &gmm).unwrap()),
            "log_responsibilities {what}"
        );
    }
    // Right in itself: the oracle's bound, on a few points.
    let gmm = mixture(&mut rng, 4, 3, "full", -2.0, 2.0);
    let points: Vec<half::f16> = (0..30)
        .map(|_| half::f16::from_f32(rng.uniform(-3.0, 3.0)))
        .collect();
    let p32: Vec<f32> = points.iter().map(|h| h.to_f32()).collect();
    check_gmm(gpu(), &p32, 10, 3, &gmm, "f16 values as f32");
    // Encoder level: whole words (3 × 3 entries in 5 words), sentinel-filled output, the same
    // bits as the blocking call.
    let (n, d) = (3, 3);
    let op = GmmOp::new_f16(gpu(), n, d, &gmm, GmmOutput::ScoreSamples).unwrap();
    let mut words = points[..n * d].to_vec();
    words.push(half::f16::ZERO);
    let input = gpu()
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::STORAGE,
        });
    let output = gpu()
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&[SENTINEL_BITS; 3]),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        });
    let mut encoder = gpu().device().create_command_encoder(&Default::default());
    op.record(&mut encoder, &input, &output).unwrap();
    gpu().queue().submit([encoder.finish()]);
    assert_eq!(
        bits(&gpu().read_f32(&output, 12).unwrap()),
        bits(
            &gpu()
                .gmm_score_samples_f16(&points[..9], n, d, &gmm)
                .unwrap()
        )
    );
    let short = gpu().device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let mut encoder = gpu().device().create_command_encoder(&Default::default());
    assert!(matches!(
        op.record(&mut encoder, &short, &output),
        Err(Error::Buffer(_))
    ));
    assert!(matches!(
        gpu().gmm_score_samples_f16(&points[1..], 10, 3, &gmm),
        Err(Error::InputLength { .. })
    ));
}

/// `gmm_log_joint` within the oracle's bound, and `gmm_predict` (`GmmOutput::Labels`):
/// scikit-learn's `predict`, the argmax of the log-joint, from one pass that reads back a label a point — the CPU mirror's labels wherever
/// the best two log-joints of a point are further apart than their rounding, on every
/// covariance kind, in both kernels (one point and four points an invocation), and through
/// the fallback where a point's components do not fit one invocation.
#[test]
fn labels_are_the_argmax_of_the_log_joint() {
    use logdomain::reference::gmm as cpu;
    let gpu = gpu();
    let mut rng = Rng(36);
    for kind in ["diag", "spherical", "full", "tied"] {
        for (n, k, d) in [(1, 1, 1), (1000, 3, 4), (4097, 16, 16), (200, 40, 64)] {
            let gmm = mixture(&mut rng, k, d, kind, -3.0, 3.0);
            let points = rng.vec(n * d, -5.0, 5.0);
            let what = format!("{kind} n={n} k={k} d={d}");
            if k == 40 && (kind == "full" || kind == "tied") {
                // Too many components for one invocation: gmm_predict falls back.
                assert!(
                    matches!(
                        GmmOp::new(gpu, n, d, &gmm, GmmOutput::Labels),
                        Err(Error::Unsupported(_))
                    ),
                    "{what}"
                );
            }
            let got = gpu.gmm_predict(&points, n, d, &gmm).unwrap();
            let want = cpu::predict(&points, n, d, &gmm);
            let (joint, err) = oracle(&points, n, d, &gmm);
            // The log-joint itself (`gmm_log_joint`), within the oracle's bound.
            let lj = gpu.gmm_log_joint(&points, n, d, &gmm).unwrap();
            assert_eq!(lj.len(), n * k, "{what}");
            for i in 0..n * k {
                assert!(
                    (f(lj[i]) - joint[i]).abs() <= err[i] || f(lj[i]) == joint[i],
                    "{what} [{i}]: log-joint {} against {}",
                    lj[i],
                    joint[i]
                );
            }
            assert_eq!(got.len(), n, "{what}");
            for p in 0..n {
                if got[p] == want[p] {
                    continue;
                }
                // A different label only where the two are equal within the rounding.
                let (a, b) = (got[p] as usize, want[p] as usize);
                let (ja, jb) = (joint[p * k + a], joint[p * k + b]);
                assert!(
                    (ja - jb).abs() <= err[p * k + a] + err[p * k + b],
                    "{what}: point {p} labelled {a} ({ja}), the mirror {b} ({jb})"
                );
            }
        }
    }
    // Equal components: the first; a non-finite point is an error.
    let same = Gmm {
        weights: vec![0.5, 0.5],
        means: vec![1.0, 1.0],
        covariance: Covariance::Diag(vec![1.0, 1.0]),
    };
    assert_eq!(gpu.gmm_predict(&[0.0, 3.0], 2, 1, &same).unwrap(), [0, 0]);
    assert!(matches!(
        gpu.gmm_predict(&[0.0, f32::NAN], 2, 1, &same),
        Err(Error::Value(_))
    ));
    // The op itself marks a non-finite point with u32::MAX, as the mirror does.
    let op = logdomain::GmmOp::new(gpu, 2, 1, &same, logdomain::GmmOutput::Labels).unwrap();
    assert_eq!(op.output_len(), 2);
    let points = gpu
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&[0.0f32, f32::NAN]),
            usage: wgpu::BufferUsages::STORAGE,
        });
    let out = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 8,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record(&mut encoder, &points, &out).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let labels: Vec<u32> = gpu
        .read_f32(&out, 8)
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(labels, [0, u32::MAX]);
    assert_eq!(cpu::predict(&[0.0, f32::NAN], 2, 1, &same), labels);
}

/// What an op records into a caller's encoder: `points` uploaded, an output of `len` values
/// filled with the sentinel, `record(encoder, points, output)`, submitted and read back.
fn recorded(
    gpu: &Gpu,
    points: &[f32],
    len: usize,
    record: impl FnOnce(&mut wgpu::CommandEncoder, &wgpu::Buffer, &wgpu::Buffer) -> Result<(), Error>,
) -> Vec<f32> {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let buffer = |v: &[f32]| {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(v),
                usage,
            })
    };
    let (input, output) = (
        buffer(points),
        buffer(&vec![f32::from_bits(SENTINEL_BITS); len]),
    );
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    record(&mut encoder, &input, &output).unwrap();
    gpu.queue().submit([encoder.finish()]);
    gpu.read_f32(&output, len as u64 * 4).unwrap()
}

/// One Lloyd step on the GPU (`KMeansStepOp`): the labels are the mirror's (the nearest centre,
/// within the rounding of the squared distances), the counts exact, and the deviation sums
/// within the bound of the f64 sums of the same labels and bit for bit the mirror's; recorded
/// into a caller's sentinel-filled buffer it gives the blocking call's bits. At a chunk tail,
/// digits' 64 dimensions, one point, far from the origin; a NaN coordinate; centres that do
/// not fit one invocation.
#[test]
fn kmeans_step_on_the_gpu() {
    use logdomain::reference::gmm as cpu;
    use logdomain::{KMeansStep, KMeansStepOp};
    let gpu = gpu();
    let mut rng = Rng(64);
    for (n, k, d, shift) in [
        (70_001, 16, 16, 0.0f32),
        (1_797, 10, 64, 0.0),
        (1_000, 5, 3, 0.0),
        (1, 1, 1, 0.0),
        (2_000, 9, 6, 1000.0),
    ] {
        let what = format!("n {n} k {k} d {d} shift {shift}");
        let centres: Vec<f32> = rng
            .vec(k * d, -2.0, 2.0)
            .iter()
            .map(|v| v + shift)
            .collect();
        let points: Vec<f32> = rng
            .vec(n * d, -3.0, 3.0)
            .iter()
            .map(|v| v + shift)
            .collect();
        let got = gpu.kmeans_step(&points, n, d, &centres).unwrap();
        let want = cpu::kmeans_step(&points, n, d, &centres);
        let want = KMeansStep::from_packed(&want, n, k, d).unwrap();
        assert_eq!(got.labels, want.labels, "{what}: labels");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.counts), bits(&want.counts), "{what}: counts");
        assert_eq!(
            bits(&got.deviation_sums),
            bits(&want.deviation_sums),
            "{what}: Σ (x − c)"
        );
        assert_eq!(
            bits(&got.squared_sums),
            bits(&want.squared_sums),
            "{what}: Σ (x − c)²"
        );
        // Against f64: each label a nearest centre within the squared distances' rounding,
        // the counts exact, the sums within (terms' rounding + summation depth) · u · Σ |term|.
        let mut count = vec![0.0f64; k];
        let (mut s1, mut a1) = (vec![0.0f64; k * d], vec![0.0f64; k * d]);
        let (mut s2, mut a2) = (vec![0.0f64; k * d], vec![0.0f64; k * d]);
        for (i, p) in points.chunks(d).enumerate() {
            let dist = |c: usize| -> (f64, f64) {
                let mut sq = 0.0;
                let mut mag = 0.0;
                for j in 0..d {
                    let t = f(p[j]) - f(centres[c * d + j]);
                    sq += t * t;
                    mag += f(p[j]).abs() + f(centres[c * d + j]).abs();
                }
                (sq, mag * mag)
            };
            let l = got.labels[i] as usize;
            assert!(l < k, "{what}: label {l} of point {i}");
            let (dl, scale) = dist(l);
            let best = (0..k).map(|c| dist(c).0).fold(f64::INFINITY, f64::min);
            assert!(
                dl - best <= 8.0 * (d as f64 + 2.0) * U * scale,
                "{what}: point {i} at {dl} from its centre {l}, {best} from the nearest"
            );
            count[l] += 1.0;
            for j in 0..d {
                let t = f(p[j]) - f(centres[l * d + j]);
                s1[l * d + j] += t;
                a1[l * d + j] += t.abs();
                s2[l * d + j] += t * t;
                a2[l * d + j] += t * t;
            }
        }
        let depth = 64.0 + depth(n) + 3.0;
        for (c, &want) in count.iter().enumerate() {
            assert_eq!(f(got.counts[c]), want, "{what}: count {c}");
            for j in 0..d {
                let q = c * d + j;
                for (name, g, t, a) in [
                    ("Σ (x − c)", got.deviation_sums[q], s1[q], a1[q]),
                    ("Σ (x − c)²", got.squared_sums[q], s2[q], a2[q]),
                ] {
                    assert!(
                        (f(g) - t).abs() <= depth * U * a,
                        "{what}: {name} [{c}, {j}] {g} against {t}"
                    );
                }
            }
        }
        // Recorded into a sentinel-filled buffer.
        let op = KMeansStepOp::new(gpu, n, d, &centres).unwrap();
        let recorded = recorded(gpu, &points, op.output_len(), |e, x, y| op.record(e, x, y));
        assert_eq!(
            op.unpack(&recorded).unwrap(),
            got,
            "{what}: recorded and blocking"
        );
    }
    // A NaN coordinate: no label, and its dimension's sums NaN, as in the mirror.
    let (n, k, d) = (600, 4, 3);
    let centres = rng.vec(k * d, -2.0, 2.0);
    let mut points = rng.vec(n * d, -3.0, 3.0);
    points[301 * d + 1] = f32::NAN;
    let got = gpu.kmeans_step(&points, n, d, &centres).unwrap();
    let want =
        KMeansStep::from_packed(&cpu::kmeans_step(&points, n, d, &centres), n, k, d).unwrap();
    assert_eq!(got.labels[301], u32::MAX);
    assert_eq!(got.labels, want.labels);
    let nan = |v: &[f32]| v.iter().map(|x| x.is_nan()).collect::<Vec<_>>();
    assert_eq!(nan(&got.deviation_sums), nan(&want.deviation_sums));
    assert!(got.deviation_sums[1].is_nan() && !got.deviation_sums[0].is_nan());
    // Errors: no points, centres that are not k × dims, more centres than one invocation holds.
    assert!(matches!(
        KMeansStepOp::new(gpu, 0, 2, &[0.0, 0.0]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        KMeansStepOp::new(gpu, 5, 2, &[0.0, 0.0, 1.0]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        gpu.kmeans_step(&[0.0; 5], 3, 2, &[0.0, 0.0]),
        Err(Error::InputLength { .. })
    ));
    let many = rng.vec(400 * 64, -1.0, 1.0);
    assert!(matches!(
        KMeansStepOp::new(gpu, 10, 64, &many),
        Err(Error::Unsupported(_))
    ));
}
