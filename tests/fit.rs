//! EM fitting of Gaussian mixtures (`GaussianMixture`) against scikit-learn's iterates
//! (fixtures made by `tests/fixtures/gmm_em/make_fixtures.py`), and its behaviour on
//! degenerate data.

mod common;

use common::*;
use logdomain::{Covariance, CovarianceType, Error, GaussianMixture, Gmm, InitParams};
use serde_json::Value;

fn floats(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture key {key}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Standard normal draws (Box–Muller) from the tests' generator.
fn normal(rng: &mut Rng) -> f32 {
    let u1 = rng.uniform(1e-7, 1.0);
    let u2 = rng.uniform(0.0, 1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// `n` points around `centers` (k × d), unit spread scaled by `scale`.
fn blobs(rng: &mut Rng, n: usize, centers: &[f32], d: usize, scale: f32) -> Vec<f32> {
    let k = centers.len() / d;
    let mut x = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = i % k;
        for j in 0..d {
            x.push(centers[c * d + j] + scale * normal(rng));
        }
    }
    x
}

/// Lower bounds may fall between iterations by the rounding of their f32 evaluation, on each of
/// the two: the pairwise sum of n log-densities, within (depth(n) + 2)·u·Σ|log p|, plus each
/// log-density's own error, taken as PER_POINT ulps of its magnitude (the quadratic form over
/// the dims, the log-determinant and the log-sum-exp over the components, each a few ulps).
fn rounding_slack(lb: f64, n: usize) -> f64 {
    const PER_POINT: f64 = 32.0;
    let depth = (n as f64).log2().ceil();
    2.0 * (depth + 2.0 + PER_POINT) * U * lb.abs()
}

#[test]
fn follows_scikit_learns_iterates() {
    let gpu = gpu();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gmm_em");
    let mut cases = 0;
    for name in [
        "diag_k5",
        "spherical_k10",
        "full_k5",
        "full_k20",
        "tied_k4",
        "diag_k4_partial",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json")))
            .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        let v: Value = serde_json::from_str(&text).unwrap();
        let (n, d, k) = (
            v["n"].as_u64().unwrap() as usize,
            v["dims"].as_u64().unwrap() as usize,
            v["n_components"].as_u64().unwrap() as usize,
        );
        let x = f32s(&floats(&v, "x"));
        let init = &v["init"];
        let (t, covariance) = match v["covariance_type"].as_str().unwrap() {
            "diag" => (
                CovarianceType::Diag,
                Covariance::Diag(
                    floats(init, "precisions")
                        .iter()
                        .map(|p| (1.0 / p) as f32)
                        .collect(),
                ),
            ),
            "spherical" => (
                CovarianceType::Spherical,
                Covariance::Spherical(
                    floats(init, "precisions")
                        .iter()
                        .map(|p| (1.0 / p) as f32)
                        .collect(),
                ),
            ),
            "full" => (
                CovarianceType::Full,
                Covariance::Full(f32s(&floats(init, "precisions_cholesky"))),
            ),
            "tied" => (
                CovarianceType::Tied,
                Covariance::Tied(f32s(&floats(init, "precisions_cholesky"))),
            ),
            other => panic!("{other}"),
        };
        let given = Gmm {
            weights: f32s(&floats(init, "weights")),
            means: f32s(&floats(init, "means")),
            covariance,
        };
        // Means and covariances given, weights not (`weights_given` false): scikit-learn's
        // `random_from_data` makes them, (1 + 10ε)/n each whichever points it draws.
        let init = if v["weights_given"].as_bool() == Some(false) {
            InitParams::GivenPartly {
                init: Box::new(InitParams::RandomFromData),
                weights: None,
                means: Some(given.means.clone()),
                covariance: Some(given.covariance.clone()),
            }
        } else {
            InitParams::Given(given.clone())
        };
        let want = floats(&v, "lower_bounds");
        let fit = GaussianMixture::new(k)
            .covariance_type(t)
            .tol(0.0)
            .max_iter(want.len())
            .reg_covar(v["reg_covar"].as_f64().unwrap())
            .init_params(init.clone())
            .fit(gpu, &x, n, d)
            .unwrap();
        assert_eq!(fit.lower_bounds.len(), want.len(), "{name}");
        for (i, (&g, &w)) in fit.lower_bounds.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs(),
                "{name} iteration {}: lower bound {g}, scikit-learn {w}",
                i + 1
            );
        }
        // The parameters after the last M-step, in scikit-learn's layouts.
        let last = &v["final"];
        for (key, got) in [
            ("weights", &fit.weights),
            ("means", &fit.means),
            ("covariances", &fit.covariances),
        ] {
            let want = floats(last, key);
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert_eq!(got.len(), want.len(), "{name} {key}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-3 * scale,
                    "{name} {key}: {g} against {w}"
                );
            }
        }
        // scikit-learn's own stopping rule with its default tol.
        let dt = &v["default_tol"];
        let fit = GaussianMixture::new(k)
            .covariance_type(t)
            .init_params(init)
            .fit(gpu, &x, n, d)
            .unwrap();
        assert_eq!(
            (fit.n_iter as u64, fit.converged),
            (
                dt["n_iter"].as_u64().unwrap(),
                dt["converged"].as_bool().unwrap()
            ),
            "{name}: iterations and convergence with tol 1e-3"
        );
        let lb = dt["lower_bound"].as_f64().unwrap();
        assert!((fit.lower_bound - lb).abs() <= 1e-4 * lb.abs(), "{name}");
        cases += 1;
    }
    assert_eq!(cases, 6);
}

#[test]
fn lower_bound_never_decreases_and_the_fit_finds_the_blobs() {
    let gpu = gpu();
    let mut rng = Rng(90);
    let (n, d, k) = (3000, 3, 4);
    // Centers far from the origin and apart: EM must find them.
    let centers: Vec<f32> = vec![
        100.0, 100.0, 100.0, 110.0, 100.0, 100.0, 100.0, 110.0, 100.0, 100.0, 100.0, 110.0,
    ];
    let x = blobs(&mut rng, n, &centers, d, 1.0);
    for t in [
        CovarianceType::Full,
        CovarianceType::Diag,
        CovarianceType::Spherical,
        CovarianceType::Tied,
    ] {
        for init in [
            InitParams::KMeans,
            InitParams::KMeansPlusPlus,
            InitParams::Random,
            InitParams::RandomFromData,
        ] {
            let fit = GaussianMixture::new(k)
                .covariance_type(t)
                .tol(1e-6)
                .max_iter(200)
                .init_params(init.clone())
                .seed(3)
                .fit(gpu, &x, n, d)
                .unwrap();
            let what = format!("{t:?} {init:?}");
            for w in fit.lower_bounds.windows(2) {
                assert!(
                    w[1] >= w[0] - rounding_slack(w[0], n),
                    "{what}: lower bound fell from {} to {}",
                    w[0],
                    w[1]
                );
            }
            assert!(fit.converged, "{what}: {} iterations", fit.n_iter);
            if t == CovarianceType::Tied
                && matches!(
                    init,
                    InitParams::KMeansPlusPlus | InitParams::RandomFromData
                )
            {
                // scikit-learn's tied covariance from one-point components is
                // (XᵀX − Σ x_c x_cᵀ) / k: about the origin, so on data far from it every
                // component spans all of it and EM ends with every mean at the data's mean.
                // scikit-learn 1.9.1 does the same on these blobs (k-means++ and
                // random_from_data, random_state 0 to 2).
                let mean: Vec<f64> = (0..d)
                    .map(|j| {
                        x.iter()
                            .skip(j)
                            .step_by(d)
                            .map(|&v| f64::from(v))
                            .sum::<f64>()
                    })
                    .map(|s| s / n as f64)
                    .collect();
                for m in fit.gmm.means.chunks(d) {
                    for (a, b) in m.iter().zip(&mean) {
                        assert!((f64::from(*a) - b).abs() < 0.05, "{what}: {m:?} {mean:?}");
                    }
                }
                continue;
            }
            if !matches!(init, InitParams::KMeansPlusPlus | InitParams::KMeans) {
                // Random responsibilities start every mean at the data's mean, and random
                // points may start two means in one blob: EM may settle in a local optimum
                // that merges two blobs (scikit-learn's too).
                continue;
            }
            // Every true center has a fitted mean within 5 standard errors (σ/√(n/k)).
            let se = 1.0 / ((n / k) as f64).sqrt();
            for c in centers.chunks(d) {
                let near = fit.gmm.means.chunks(d).any(|m| {
                    m.iter()
                        .zip(c)
                        .all(|(a, b)| (f64::from(*a) - f64::from(*b)).abs() <= 5.0 * se)
                });
                assert!(near, "{what}: no mean near {c:?}: {:?}", fit.gmm.means);
            }
            let total: f32 = fit.gmm.weights.iter().sum();
            assert!((total - 1.0).abs() <= 1e-6, "{what}");
            // The fitted mixture labels its own samples.
            let (s, labels) = fit.sample(400, 11).unwrap();
            assert_eq!((s.len(), labels.len()), (400 * d, 400));
            assert!(
                labels.windows(2).all(|w| w[0] <= w[1]),
                "sample orders by component"
            );
            let predicted = fit.predict(gpu, &s, 400).unwrap();
            let agree = predicted
                .iter()
                .zip(&labels)
                .filter(|(a, b)| a == b)
                .count();
            assert!(agree >= 396, "{what}: {agree} of 400");
            let proba = fit.predict_proba(gpu, &s, 400).unwrap();
            for row in proba.chunks(k) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() <= 1e-5, "{what}: {sum}");
            }
            let score = fit.score(gpu, &x, n).unwrap();
            assert!(
                (score - fit.lower_bound).abs() <= 0.05 * fit.lower_bound.abs(),
                "{what}"
            );
        }
    }
}

/// No panic, no NaN: every parameter finite, weights summing to 1, covariances positive.
fn assert_sane(fit: &logdomain::FittedGmm, what: &str) {
    let g = &fit.gmm;
    assert!(
        g.weights.iter().chain(&g.means).all(|v| v.is_finite()),
        "{what}: {g:?}"
    );
    assert!(fit.covariances.iter().all(|v| v.is_finite()), "{what}");
    assert!(
        fit.precisions_cholesky.iter().all(|v| v.is_finite()),
        "{what}"
    );
    let total: f32 = g.weights.iter().sum();
    assert!(
        (total - 1.0).abs() <= 1e-5,
        "{what}: weights sum to {total}"
    );
    assert!(fit.lower_bound.is_finite(), "{what}");
}

#[test]
fn degenerate_data() {
    let gpu = gpu();
    let all = [
        CovarianceType::Full,
        CovarianceType::Diag,
        CovarianceType::Spherical,
        CovarianceType::Tied,
    ];
    // Every point the same: the covariances are reg_covar.
    let same = [2.5f32, -1.0].repeat(50);
    for t in all {
        let fit = GaussianMixture::new(3)
            .covariance_type(t)
            .fit(gpu, &same, 50, 2)
            .unwrap();
        assert_sane(&fit, &format!("duplicates {t:?}"));
        let diag: Vec<f64> = match t {
            CovarianceType::Full | CovarianceType::Tied => fit
                .covariances
                .chunks(4)
                .flat_map(|m| [m[0], m[3]])
                .collect(),
            _ => fit.covariances.clone(),
        };
        assert!(
            diag.iter().all(|&v| (v - 1e-6).abs() <= 1e-9),
            "{t:?}: {diag:?}"
        );
    }
    // Two tight clusters and five components: some lose (nearly) all their points. (Clusters
    // on one line, (0, 0) and (50, 50), would make the full covariance about their joint mean
    // singular to within 1e−9 of its scale, beyond what f32 sums resolve: the limit in docs/api.md.)
    let mut rng = Rng(91);
    let mut x = blobs(&mut rng, 200, &[0.0, 0.0, 50.0, 0.0], 2, 1e-3);
    x.extend([50.0f32, 0.0].repeat(20));
    for t in all {
        for init in [
            InitParams::KMeans,
            InitParams::KMeansPlusPlus,
            InitParams::Random,
            InitParams::RandomFromData,
        ] {
            let fit = GaussianMixture::new(5)
                .covariance_type(t)
                .init_params(init.clone())
                .seed(5)
                .fit(gpu, &x, 220, 2)
                .unwrap_or_else(|e| panic!("collapse {t:?} {init:?}: {e}"));
            assert_sane(&fit, &format!("collapse {t:?} {init:?}"));
        }
    }
    // More dimensions than points.
    let wide = Rng(92).vec(5 * 8, -1.0, 1.0);
    for t in all {
        let fit = GaussianMixture::new(2)
            .covariance_type(t)
            .fit(gpu, &wide, 5, 8)
            .unwrap();
        assert_sane(&fit, &format!("dims > n {t:?}"));
    }
    // A component given where no point is: its weight goes to ~0, nothing breaks.
    let given = Gmm {
        weights: vec![0.5, 0.5],
        means: vec![0.0, 0.0, 1e4, 1e4],
        covariance: Covariance::Diag(vec![1.0; 4]),
    };
    let near: Vec<f32> = Rng(93).vec(100 * 2, -1.0, 1.0);
    let fit = GaussianMixture::new(2)
        .covariance_type(CovarianceType::Diag)
        .init_params(InitParams::Given(given))
        .fit(gpu, &near, 100, 2)
        .unwrap();
    assert_sane(&fit, "empty component");
    assert!(fit.gmm.weights[1] < 1e-10, "{:?}", fit.gmm.weights);
}

#[test]
fn bad_input_is_a_clear_error() {
    let gpu = gpu();
    let mut x = Rng(94).vec(40, -1.0, 1.0);
    let gm = GaussianMixture::new(2).covariance_type(CovarianceType::Diag);
    x[13] = f32::NAN;
    match gm.fit(gpu, &x, 20, 2) {
        Err(Error::Value(m)) => assert!(m.contains("point 6") && m.contains("finite"), "{m}"),
        other => panic!("{other:?}"),
    }
    x[13] = f32::INFINITY;
    assert!(matches!(gm.fit(gpu, &x, 20, 2), Err(Error::Value(_))));
    x[13] = 0.5;
    assert!(matches!(
        gm.fit(gpu, &x, 21, 2),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        GaussianMixture::new(30).fit(gpu, &x, 20, 2),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        GaussianMixture::new(0).fit(gpu, &x, 20, 2),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        gm.clone().reg_covar(-1.0).fit(gpu, &x, 20, 2),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        gm.clone().max_iter(0).fit(gpu, &x, 20, 2),
        Err(Error::Value(_))
    ));
    let spherical = Gmm {
        weights: vec![0.5, 0.5],
        means: vec![0.0; 4],
        covariance: Covariance::Spherical(vec![1.0; 2]),
    };
    assert!(matches!(
        gm.clone()
            .init_params(InitParams::Given(spherical))
            .fit(gpu, &x, 20, 2),
        Err(Error::Value(_))
    ));
    // A tied fit takes one shared factor of dims × dims, and a warm start of its own kind.
    let tied = GaussianMixture::new(2).covariance_type(CovarianceType::Tied);
    let wrong = Gmm {
        weights: vec![0.5, 0.5],
        means: vec![0.0; 4],
        covariance: Covariance::Tied(vec![1.0; 8]),
    };
    assert!(matches!(
        tied.clone()
            .init_params(InitParams::Given(wrong))
            .fit(gpu, &x, 20, 2),
        Err(Error::InputLength { .. })
    ));
    let diag_fit = gm.fit(gpu, &x, 20, 2).unwrap();
    match tied
        .clone()
        .init_params(InitParams::WarmStart(Box::new(diag_fit.clone())))
        .fit(gpu, &x, 20, 2)
    {
        Err(Error::Value(m)) => assert!(m.contains("warm start has diag"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        GaussianMixture::new(3)
            .covariance_type(CovarianceType::Diag)
            .init_params(InitParams::WarmStart(Box::new(diag_fit)))
            .fit(gpu, &x, 20, 2),
        Err(Error::Value(_))
    ));
    // Without reg_covar, duplicates leave a zero covariance: scikit-learn's error, not NaN.
    let same = [0.0f32, 0.0].repeat(10);
    for t in [CovarianceType::Diag, CovarianceType::Tied] {
        match gm
            .clone()
            .covariance_type(t)
            .reg_covar(0.0)
            .fit(gpu, &same, 10, 2)
        {
            Err(Error::Value(m)) => assert!(m.contains("ill-defined"), "{t:?}: {m}"),
            other => panic!("{t:?}: {other:?}"),
        }
    }
}

/// scikit-learn's `bic` and `aic`: its parameter counts, its formulas on the fitted score, and
/// BIC picking the number of blobs that made the data.
#[test]
fn information_criteria_as_scikit_learn() {
    let gpu = gpu();
    let mut rng = Rng(41);
    let (n, d) = (1500, 2);
    let centers = [0.0f32, 0.0, 8.0, 0.0, 0.0, 8.0];
    let x = blobs(&mut rng, n, &centers, d, 1.0);
    // scikit-learn's _n_parameters for k = 3, d = 2: covariances (full 3·3, diag 3·2,
    // spherical 3) + means 3·2 + weights 2.
    for (t, params) in [
        (CovarianceType::Full, 17),
        (CovarianceType::Diag, 14),
        (CovarianceType::Spherical, 11),
        (CovarianceType::Tied, 11),
    ] {
        let fit = GaussianMixture::new(3)
            .covariance_type(t)
            .seed(5)
            .fit(gpu, &x, n, d)
            .unwrap();
        assert_eq!(fit.n_parameters(), params, "{t:?}");
        let score = fit.score(gpu, &x, n).unwrap();
        let bic = fit.bic(gpu, &x, n).unwrap();
        let aic = fit.aic(gpu, &x, n).unwrap();
        let nf = n as f64;
        assert!((bic - (-2.0 * score * nf + params as f64 * nf.ln())).abs() <= 1e-9 * bic.abs());
        assert!((aic - (-2.0 * score * nf + 2.0 * params as f64)).abs() <= 1e-9 * aic.abs());
        assert!(bic > aic, "{t:?}: ln {n} > 2, so BIC penalises more");
    }
    // Model selection: the lowest BIC is at the three blobs the data came from.
    let bics: Vec<f64> = (1..=5)
        .map(|k| {
            let fit = GaussianMixture::new(k)
                .covariance_type(CovarianceType::Full)
                .seed(5)
                .fit(gpu, &x, n, d)
                .unwrap();
            fit.bic(gpu, &x, n).unwrap()
        })
        .collect();
    let best = bics
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
        + 1;
    assert_eq!(best, 3, "BIC by k = 1..5: {bics:?}");
}

/// scikit-learn's `warm_start`: a fit continued from an earlier one is the longer fit, bit for
/// bit, for every covariance type; `n_init` is then one initialisation.
#[test]
fn a_warm_start_continues_the_fit() {
    let gpu = gpu();
    let mut rng = Rng(95);
    let (n, d, k) = (1200, 3, 3);
    let x = blobs(
        &mut rng,
        n,
        &[0.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0, 6.0, 0.0],
        d,
        1.5,
    );
    for t in [
        CovarianceType::Full,
        CovarianceType::Diag,
        CovarianceType::Spherical,
        CovarianceType::Tied,
    ] {
        let gm = GaussianMixture::new(k).covariance_type(t).tol(0.0).seed(4);
        let long = gm.clone().max_iter(9).fit(gpu, &x, n, d).unwrap();
        let first = gm.clone().max_iter(4).fit(gpu, &x, n, d).unwrap();
        let rest = gm
            .clone()
            .max_iter(5)
            .n_init(3)
            .init_params(InitParams::WarmStart(Box::new(first.clone())))
            .fit(gpu, &x, n, d)
            .unwrap();
        assert_eq!(
            [first.lower_bounds.clone(), rest.lower_bounds.clone()].concat(),
            long.lower_bounds,
            "{t:?}"
        );
        assert_eq!(rest.weights, long.weights, "{t:?}");
        assert_eq!(rest.means, long.means, "{t:?}");
        assert_eq!(rest.covariances, long.covariances, "{t:?}");
        assert_eq!(rest.gmm, long.gmm, "{t:?}");
    }
}

/// `random_from_data`: seeded, and its first E-step is that of means at k distinct points of
/// the data with scikit-learn's initial weights N_k / n (each component one point).
#[test]
fn random_from_data_starts_at_distinct_points() {
    let gpu = gpu();
    let mut rng = Rng(96);
    let (n, d, k) = (600, 2, 4);
    let x = blobs(
        &mut rng,
        n,
        &[0.0, 0.0, 5.0, 0.0, 0.0, 5.0, 5.0, 5.0],
        d,
        1.0,
    );
    let gm = GaussianMixture::new(k)
        .covariance_type(CovarianceType::Spherical)
        .init_params(InitParams::RandomFromData)
        .max_iter(1)
        .tol(0.0);
    let a = gm.clone().seed(1).fit(gpu, &x, n, d).unwrap();
    let b = gm.clone().seed(1).fit(gpu, &x, n, d).unwrap();
    let c = gm.clone().seed(2).fit(gpu, &x, n, d).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.lower_bounds, c.lower_bounds);
    // With means at data points and variances reg_covar (1e-6), each point's log-density is
    // that of its nearest chosen point or of none, so the first lower bound is far below any
    // fitted one, and the M-step after it gives every component some of the data.
    assert!(a.lower_bounds[0] < -1e4, "{:?}", a.lower_bounds);
    assert!(
        a.weights.iter().all(|&w| w > 0.0 && w < 1.0),
        "{:?}",
        a.weights
    );
}

/// A device of `backends` whose buffers and storage bindings hold at most `bytes`.
fn small_device(backends: wgpu::Backends, bytes: u64) -> logdomain::Gpu {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap_or_else(|e| {
                panic!(
                    "no {backends:?} adapter ({e}): install mesa-vulkan-drivers for lavapipe; \
                     llvmpipe (GL) comes with Mesa"
                )
            });
    let mut limits = adapter.limits();
    limits.max_buffer_size = bytes;
    limits.max_storage_buffer_binding_size = bytes;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("small"),
        required_limits: limits,
        ..Default::default()
    }))
    .expect("device");
    let gpu = logdomain::Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    gpu
}

/// Points several times the device's largest buffer: the E-steps read them in batches, resident
/// or streamed through one buffer each E-step, with the same bits; scoring takes any number of
/// points; the fit agrees with the one on the full-size device within the rounding of its sums.
#[test]
fn points_larger_than_the_device_stream_through_it() {
    let (device, queue) = own_device(|l| {
        l.max_buffer_size = 1 << 20;
        l.max_storage_buffer_binding_size = 1 << 20;
    });
    let small = logdomain::Gpu::from_device(device, queue);
    small.fill_outputs_with_sentinel(true);
    let mut rng = Rng(97);
    let (n, d, k) = (200_000, 4, 3);
    let x = blobs(
        &mut rng,
        n,
        &[0.0, 0.0, 0.0, 0.0, 8.0, 0.0, 0.0, 0.0, 0.0, 8.0, 0.0, 0.0],
        d,
        1.0,
    );
    assert!(x.len() * 4 >= 3 << 20, "the points are 3 buffers' worth");
    for t in [CovarianceType::Diag, CovarianceType::Full] {
        let gm = GaussianMixture::new(k)
            .covariance_type(t)
            .tol(0.0)
            .max_iter(4)
            .seed(2);
        let resident = gm
            .clone()
            .resident_bytes(u64::MAX)
            .fit(&small, &x, n, d)
            .unwrap();
        let streamed = gm
            .clone()
            .resident_bytes(1 << 20)
            .fit(&small, &x, n, d)
            .unwrap();
        assert_eq!(resident, streamed, "{t:?}: streamed against resident");
        let whole = gm.fit(gpu(), &x, n, d).unwrap();
        for (a, b) in streamed.lower_bounds.iter().zip(&whole.lower_bounds) {
            assert!(
                (a - b).abs() <= rounding_slack(*b, n),
                "{t:?}: {a} against {b}"
            );
        }
        // Scoring in batches gives each point's bits of one call on the full-size device.
        let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(streamed.score_samples(&small, &x, n).unwrap()),
            bits(gpu().gmm_score_samples(&x, n, d, &streamed.gmm).unwrap()),
            "{t:?}"
        );
        // ...and so does the blocking call on the small device, in batches of its own.
        assert_eq!(
            bits(small.gmm_score_samples(&x, n, d, &streamed.gmm).unwrap()),
            bits(gpu().gmm_score_samples(&x, n, d, &streamed.gmm).unwrap()),
            "{t:?}"
        );
        let r = small
            .gmm_log_responsibilities(&x, n, d, &streamed.gmm)
            .unwrap();
        assert_eq!(r.len(), n * k);
        assert_eq!(
            bits(r),
            bits(
                gpu()
                    .gmm_log_responsibilities(&x, n, d, &streamed.gmm)
                    .unwrap()
            ),
            "{t:?}"
        );
    }
}

/// lavapipe (Vulkan) and llvmpipe (GL) in one process: the batches shared out over both, the
/// sums added in batch order — the same result every run, and that of one device computing
/// every batch, within the rounding of the sums where the two compile the kernels differently.
#[test]
fn a_fit_on_two_adapters_is_deterministic() {
    let vk = small_device(wgpu::Backends::VULKAN, 1 << 20);
    let gl = small_device(wgpu::Backends::GL, 1 << 20);
    let mut rng = Rng(98);
    let (n, d, k) = (120_000, 3, 3);
    let x = blobs(
        &mut rng,
        n,
        &[0.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0, 6.0, 0.0],
        d,
        1.0,
    );
    for t in [CovarianceType::Diag, CovarianceType::Full] {
        let gm = GaussianMixture::new(k)
            .covariance_type(t)
            .tol(0.0)
            .max_iter(4)
            .seed(6);
        let both = gm.fit_on(&[&vk, &gl], &x, n, d).unwrap();
        let again = gm.fit_on(&[&vk, &gl], &x, n, d).unwrap();
        assert_eq!(both, again, "{t:?}: two runs");
        // The same batches, all on lavapipe: one device twice, and the devices swapped.
        let one = gm.fit_on(&[&vk, &vk], &x, n, d).unwrap();
        let swapped = gm.fit_on(&[&gl, &vk], &x, n, d).unwrap();
        for other in [&one, &swapped] {
            for (a, b) in both.lower_bounds.iter().zip(&other.lower_bounds) {
                assert!(
                    (a - b).abs() <= rounding_slack(*b, n),
                    "{t:?}: {a} against {b}"
                );
            }
        }
        // Scoring shared out over both gives every point its one-device value.
        let shared = both.score_samples_on(&[&vk, &gl], &x, n).unwrap();
        let alone = both.score_samples(&vk, &x, n).unwrap();
        for (a, b) in shared.iter().zip(&alone) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{t:?}: {a} against {b}"
            );
        }
    }
}

/// `GivenPartly` (scikit-learn's `*_init` given apart): all three given is `Given`, bit for
/// bit; one given changes the start; its errors are errors, before any GPU work.
#[test]
fn parameters_given_apart() {
    let gpu = gpu();
    let mut rng = Rng(99);
    let (n, d, k) = (900, 2, 3);
    let x = blobs(&mut rng, n, &[0.0, 0.0, 6.0, 0.0, 0.0, 6.0], d, 1.0);
    let given = Gmm {
        weights: vec![0.2, 0.3, 0.5],
        means: vec![0.5, 0.5, 5.0, 0.5, 0.5, 5.0],
        covariance: Covariance::Diag(vec![1.5; k * d]),
    };
    let gm = GaussianMixture::new(k)
        .covariance_type(CovarianceType::Diag)
        .tol(0.0)
        .max_iter(5)
        .seed(8);
    let all = gm
        .clone()
        .init_params(InitParams::GivenPartly {
            init: Box::new(InitParams::KMeans),
            weights: Some(given.weights.clone()),
            means: Some(given.means.clone()),
            covariance: Some(given.covariance.clone()),
        })
        .fit(gpu, &x, n, d)
        .unwrap();
    let whole = gm
        .clone()
        .init_params(InitParams::Given(given.clone()))
        .fit(gpu, &x, n, d)
        .unwrap();
    assert_eq!(all, whole);
    let base = gm.clone().fit(gpu, &x, n, d).unwrap();
    let means_only = gm
        .clone()
        .init_params(InitParams::GivenPartly {
            init: Box::new(InitParams::KMeans),
            weights: None,
            means: Some(given.means.clone()),
            covariance: None,
        })
        .fit(gpu, &x, n, d)
        .unwrap();
    assert_ne!(means_only.lower_bounds[0], base.lower_bounds[0]);
    assert_ne!(means_only.lower_bounds[0], whole.lower_bounds[0]);
    let partly = |init: InitParams, weights: Option<Vec<f32>>, covariance: Option<Covariance>| {
        gm.clone()
            .init_params(InitParams::GivenPartly {
                init: Box::new(init),
                weights,
                means: None,
                covariance,
            })
            .fit(gpu, &x, n, d)
    };
    assert!(matches!(
        partly(InitParams::Given(given.clone()), None, None),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        partly(InitParams::KMeans, Some(vec![1.0]), None),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        partly(
            InitParams::KMeans,
            None,
            Some(Covariance::Spherical(vec![1.0; k]))
        ),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        partly(
            InitParams::KMeans,
            None,
            Some(Covariance::Diag(vec![1.0; 2]))
        ),
        Err(Error::InputLength { .. })
    ));
    // A full factor of the wrong length is an error, not a slice out of range.
    let short = Gmm {
        covariance: Covariance::Full(vec![1.0; 3]),
        ..given
    };
    assert!(matches!(
        GaussianMixture::new(k)
            .init_params(InitParams::Given(short))
            .fit(gpu, &x, n, d),
        Err(Error::InputLength { .. })
    ));
}

/// The k-means start with each cluster summed on the device (`KMeansStepOp`) and on the host:
/// the same labels at every Lloyd iteration here, so the same starting mixture (the centres
/// within f32 rounding) and EM's lower bounds within that rounding's effect. Blobs far from the
/// origin; a digits-sized shape (64 dimensions); every covariance type.
#[test]
fn kmeans_sums_on_the_device_match_the_host() {
    use logdomain::CentroidSums;
    let gpu = gpu();
    let mut rng = Rng(91);
    for (n, d, k, offset, t) in [
        (3000, 3, 4, 100.0f32, CovarianceType::Diag),
        (3000, 3, 4, 100.0, CovarianceType::Full),
        (1797, 64, 10, 0.0, CovarianceType::Spherical),
        (2000, 5, 6, 0.0, CovarianceType::Tied),
    ] {
        let centers: Vec<f32> = (0..k * d)
            .map(|_| offset + 6.0 * normal(&mut rng))
            .collect();
        let x = blobs(&mut rng, n, &centers, d, 1.0);
        let fit = |sums| {
            GaussianMixture::new(k)
                .covariance_type(t)
                .max_iter(5)
                .centroid_sums(sums)
                .seed(5)
                .fit(gpu, &x, n, d)
                .unwrap()
        };
        let (device, host) = (fit(CentroidSums::Device), fit(CentroidSums::Host));
        let what = format!("n {n} d {d} k {k} {t:?}");
        assert_eq!(device.n_iter, host.n_iter, "{what}");
        for (a, b) in device.lower_bounds.iter().zip(&host.lower_bounds) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs(),
                "{what}: lower bounds {:?} and {:?}",
                device.lower_bounds,
                host.lower_bounds
            );
        }
        for (a, b) in device.means.iter().zip(&host.means) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{what}: means {a} {b}"
            );
        }
    }
}
