//! The `logdomain` command as a process: the demo, `eval` round trips through `.npy` compared
//! with the library call, bad files (one error line, exit 1, no output file), usage errors
//! (exit 2), and `bench --json`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use logdomain::{CrossEntropy, Reduction};
use npyz::WriterBuilder;

fn logdomain(args: &[&str]) -> Output {
    // Mesa's window-system code complains on stderr when XDG_RUNTIME_DIR is unset (as in CI);
    // give it one, so that stderr holds only what the command says.
    let runtime = std::env::temp_dir().join(format!("logdomain-xdg-{}", std::process::id()));
    std::fs::create_dir_all(&runtime).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    Command::new(env!("CARGO_BIN_EXE_logdomain"))
        .args(args)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .expect("the logdomain binary runs")
}

/// A fresh directory for one test's files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("logdomain-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    let mut out = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(path, out).unwrap();
}

fn read(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn demo_runs_and_agrees_with_the_cpu() {
    let out = logdomain(&[
        "demo",
        "--points",
        "2000",
        "--rows",
        "64",
        "--classes",
        "100",
    ]);
    let text = ok(&out);
    assert!(text.contains("adapter:"), "{text}");
    assert!(text.contains("GMM log p(x): 2000 points"), "{text}");
    assert!(text.contains("cross-entropy: 64 × 100 logits"), "{text}");
    assert!(
        text.contains("logsumexp([0, -40]) = 4.248354e-18"),
        "{text}"
    );
}

#[test]
fn eval_round_trips_match_the_library() {
    let gpu = gpu();
    let d = dir("roundtrip");
    let mut rng = Rng(71);
    let (rows, cols) = (50, 7);
    let x = rng.vec(rows * cols, -5.0, 5.0);
    let xp = d.join("x.npy");
    write(&xp, &[rows as u64, cols as u64], &x);
    for (op, want, shape) in [
        (
            "log_softmax",
            gpu.log_softmax(&x, rows, cols).unwrap(),
            vec![rows as u64, cols as u64],
        ),
        (
            "logsumexp",
            gpu.logsumexp(&x, rows, cols).unwrap(),
            vec![rows as u64],
        ),
        (
            "softmax",
            gpu.softmax(&x, rows, cols).unwrap(),
            vec![rows as u64, cols as u64],
        ),
    ] {
        let yp = d.join(format!("{op}.npy"));
        let text = ok(&logdomain(&[
            "eval",
            op,
            "--input",
            s(&xp),
            "--output",
            s(&yp),
        ]));
        assert!(text.starts_with(op), "{text}");
        let (got_shape, got) = read(&yp);
        assert_eq!(got_shape, shape, "{op}");
        assert_eq!(bits(&got), bits(&want), "{op}");
    }
    // Cross-entropy with int64 targets and options, per row.
    let targets: Vec<i64> = (0..rows as i64)
        .map(|r| if r == 3 { 2 } else { r % 7 })
        .collect();
    let tp = d.join("t.npy");
    write(&tp, &[rows as u64], &targets);
    let wp = d.join("w.npy");
    let weight = rng.vec(cols, 0.5, 2.0);
    write(&wp, &[cols as u64], &weight);
    let yp = d.join("ce.npy");
    ok(&logdomain(&[
        "eval",
        "cross_entropy",
        "--input",
        s(&xp),
        "--targets",
        s(&tp),
        "--weight",
        s(&wp),
        "--ignore-index",
        "2",
        "--label-smoothing",
        "0.1",
        "--reduction",
        "none",
        "--output",
        s(&yp),
    ]));
    let want = gpu
        .cross_entropy(
            &x,
            rows,
            cols,
            &targets,
            &CrossEntropy {
                weight: Some(weight),
                ignore_index: 2,
                label_smoothing: 0.1,
                reduction: Reduction::None,
            },
        )
        .unwrap();
    let (shape, got) = read(&yp);
    assert_eq!(shape, vec![rows as u64]);
    assert_eq!(bits(&got), bits(&want));
    // A reduction gives a 0-d array.
    ok(&logdomain(&[
        "eval",
        "cross_entropy",
        "--input",
        s(&xp),
        "--targets",
        s(&tp),
        "--output",
        s(&yp),
    ]));
    let (shape, got) = read(&yp);
    assert!(shape.is_empty());
    let want = gpu
        .cross_entropy(&x, rows, cols, &targets, &CrossEntropy::default())
        .unwrap();
    assert_eq!(bits(&got), bits(&want));
    // Gradients: the fused cross-entropy writes the loss and the gradient; a backward op.
    let (gp, lp) = (d.join("dlogits.npy"), d.join("loss.npy"));
    let text = ok(&logdomain(&[
        "eval",
        "cross_entropy_with_grad",
        "--input",
        s(&xp),
        "--targets",
        s(&tp),
        "--output",
        s(&lp),
        "--grad-output",
        s(&gp),
    ]));
    assert!(text.contains("gradient ->"), "{text}");
    let (want_loss, want_grad) = gpu
        .cross_entropy_with_grad(&x, rows, cols, &targets, &CrossEntropy::default())
        .unwrap();
    assert_eq!(bits(&read(&lp).1), bits(&want_loss));
    let (shape, got) = read(&gp);
    assert_eq!(shape, vec![rows as u64, cols as u64]);
    assert_eq!(bits(&got), bits(&want_grad));
    let g = rng.vec(rows * cols, -1.0, 1.0);
    let g_path = d.join("g.npy");
    write(&g_path, &[rows as u64, cols as u64], &g);
    let lsm = gpu.log_softmax(&x, rows, cols).unwrap();
    let lsm_path = d.join("lsm.npy");
    write(&lsm_path, &[rows as u64, cols as u64], &lsm);
    let yp = d.join("dx.npy");
    ok(&logdomain(&[
        "eval",
        "log_softmax_backward",
        "--input",
        s(&lsm_path),
        "--grad",
        s(&g_path),
        "--output",
        s(&yp),
    ]));
    assert_eq!(
        bits(&read(&yp).1),
        bits(&gpu.log_softmax_backward(&lsm, &g, rows, cols).unwrap())
    );
    // Without --grad-output the fused op is an error before any output is written.
    let missing = d.join("never.npy");
    let out = logdomain(&[
        "eval",
        "cross_entropy_with_grad",
        "--input",
        s(&xp),
        "--targets",
        s(&tp),
        "--output",
        s(&missing),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!missing.exists());
    // A mixture from JSON.
    let gp = d.join("gmm.json");
    std::fs::write(
        &gp,
        r#"{"weights": [0.25, 0.75], "covariance_type": "diag",
            "means": [[0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]],
            "covariances": [[1, 1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2, 2]]}"#,
    )
    .unwrap();
    let yp = d.join("gmm.npy");
    ok(&logdomain(&[
        "eval",
        "gmm_score_samples",
        "--input",
        s(&xp),
        "--gmm",
        s(&gp),
        "--output",
        s(&yp),
    ]));
    let gmm = logdomain::Gmm {
        weights: vec![0.25, 0.75],
        means: [vec![0.0; 7], vec![1.0; 7]].concat(),
        covariance: logdomain::Covariance::Diag([vec![1.0; 7], vec![2.0; 7]].concat()),
    };
    let (shape, got) = read(&yp);
    assert_eq!(shape, vec![rows as u64]);
    assert_eq!(
        bits(&got),
        bits(&gpu.gmm_score_samples(&x, rows, cols, &gmm).unwrap())
    );
}

/// Bad input: one error line on stderr, exit 1, and no output file.
fn fails(args: &[&str], output: &Path, says: &str) {
    let out = logdomain(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(
        err.contains(says),
        "{args:?}: {err:?} should mention {says:?}"
    );
    assert!(!output.exists(), "{args:?} left {}", output.display());
    let leftovers: Vec<_> = std::fs::read_dir(output.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{args:?} left a partial file");
}

#[test]
fn bad_files_give_one_error_line_and_no_output() {
    let d = dir("bad");
    let out = d.join("out.npy");
    let good = d.join("x.npy");
    write(&good, &[4, 3], &[0.5f32; 12]);
    let f64s = d.join("f64.npy");
    write(&f64s, &[4, 3], &[0.5f64; 12]);
    let rank3 = d.join("rank3.npy");
    write(&rank3, &[2, 2, 3], &[0.5f32; 12]);
    let truncated = d.join("truncated.npy");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 8]).unwrap();
    let garbage = d.join("garbage.npy");
    std::fs::write(&garbage, b"not an npy file at all").unwrap();
    let targets = d.join("t.npy");
    write(&targets, &[5], &[0i64; 5]);
    let float_targets = d.join("tf.npy");
    write(&float_targets, &[4], &[0.0f32; 4]);
    let out_of_range = d.join("t9.npy");
    write(&out_of_range, &[4], &[0i64, 1, 9, 2]);
    fn eval<'a>(input: &'a Path, out: &'a Path) -> Vec<&'a str> {
        vec![
            "eval",
            "log_softmax",
            "--input",
            s(input),
            "--output",
            s(out),
        ]
    }
    fails(&eval(&f64s, &out), &out, "expected float32");
    fails(
        &[
            "eval",
            "log_prod",
            "--input",
            s(&rank3),
            "--output",
            s(&out),
        ],
        &out,
        "2-D",
    );
    let mut bad_axis = eval(&rank3, &out);
    bad_axis.extend(["--axis", "3"]);
    fails(&bad_axis, &out, "out of bounds");
    let mut twice = eval(&rank3, &out);
    twice.extend(["--axis", "1", "--axis", "-2"]);
    fails(&twice, &out, "duplicate");
    let mut word = eval(&rank3, &out);
    word.extend(["--axis", "first"]);
    fails(&word, &out, "expected an integer");
    let mut loss_axis = ce(&good, &targets, &out);
    loss_axis.extend(["--axis", "0"]);
    fails(&loss_axis, &out, "--axis and --keepdims are for");
    fails(&eval(&truncated, &out), &out, "truncated");
    fails(&eval(&garbage, &out), &out, "not a readable .npy");
    fails(&eval(&d.join("missing.npy"), &out), &out, "missing.npy");
    fn ce<'a>(good: &'a Path, t: &'a Path, out: &'a Path) -> Vec<&'a str> {
        vec![
            "eval",
            "cross_entropy",
            "--input",
            s(good),
            "--targets",
            s(t),
            "--output",
            s(out),
        ]
    }
    fails(&ce(&good, &targets, &out), &out, "expected (4,)");
    fails(
        &ce(&good, &float_targets, &out),
        &out,
        "integer class indices",
    );
    fails(&ce(&good, &out_of_range, &out), &out, "outside [0, 3)");
    fails(
        &[
            "eval",
            "cross_entropy",
            "--input",
            s(&good),
            "--output",
            s(&out),
        ],
        &out,
        "needs --targets",
    );
    // The op rejects it: a negative variance.
    let neg = d.join("neg.npy");
    write(&neg, &[4, 3], &[-1.0f32; 12]);
    fails(
        &[
            "eval",
            "gaussian_nll",
            "--input",
            s(&good),
            "--targets",
            s(&good),
            "--var",
            s(&neg),
            "--output",
            s(&out),
        ],
        &out,
        "negative",
    );
    // A failed run does not replace an existing output either.
    std::fs::write(&out, b"keep").unwrap();
    let out2 = logdomain(&eval(&f64s, &out));
    assert_eq!(out2.status.code(), Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec![
            "eval",
            "no_such_op",
            "--input",
            "x.npy",
            "--output",
            "y.npy",
        ],
        vec!["eval", "log_softmax"],
        vec!["bench", "--shape", "12by4"],
        vec!["frobnicate"],
    ] {
        let out = logdomain(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let help = ok(&logdomain(&["eval", "--help"]));
    assert!(help.contains("Examples:"), "{help}");
}

#[test]
fn bench_json_reports_every_measurement() {
    let out = logdomain(&[
        "bench",
        "--op",
        "logsumexp",
        "--op",
        "cross_entropy",
        "--shape",
        "64x100",
        "--runs",
        "1",
        "--json",
    ]);
    let text = ok(&out);
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON on stdout");
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        for key in [
            "gpu_ms",
            "end_to_end_ms",
            "cpu_reference_ms",
            "gb_per_s",
            "cpu_over_gpu",
        ] {
            assert!(r[key].as_f64().unwrap() > 0.0, "{key} in {r}");
        }
        assert!(["timestamps", "wall"].contains(&r["gpu_clock"].as_str().unwrap()));
    }
    assert!(json["adapter"].as_str().unwrap().contains("("));
    let table = ok(&logdomain(&[
        "bench",
        "--op",
        "gaussian_nll",
        "--shape",
        "10x64",
        "--runs",
        "1",
    ]));
    assert!(
        table.contains("gaussian_nll") && table.contains("GB/s"),
        "{table}"
    );
    // --f16 reaches the ops that take it (named with _f16) and leaves the others alone; the
    // copy yardstick counts a read and a write of every word.
    let out = logdomain(&[
        "bench",
        "--op",
        "cross_entropy",
        "--op",
        "gmm_score_samples",
        "--op",
        "gaussian_nll",
        "--op",
        "copy",
        "--shape",
        "64x16",
        "--runs",
        "1",
        "--f16",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&ok(&out)).expect("JSON on stdout");
    let results = json["results"].as_array().unwrap();
    let ops: Vec<&str> = results.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        [
            "cross_entropy_f16",
            "gmm_score_samples_f16",
            "gaussian_nll",
            "copy"
        ]
    );
    assert_eq!(
        results[0]["bytes_read"].as_u64(),
        Some(64 * 16 * 2 + 64 * 4)
    );
    assert_eq!(results[3]["bytes_read"].as_u64(), Some(64 * 16 * 8));
    let out = logdomain(&[
        "bench",
        "--op",
        "softmax",
        "--op",
        "logsumexp",
        "--shape",
        "64x16",
        "--runs",
        "1",
        "--f16-out",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&ok(&out)).expect("JSON on stdout");
    let ops: Vec<&str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["softmax_to_f16", "logsumexp"]);
    let both = logdomain(&["bench", "--f16", "--f16-out"]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "--f16 with --f16-out is a usage error"
    );
}

#[test]
fn stability_writes_a_table_a_csv_and_a_plot() {
    let d = dir("stability");
    let text = ok(&logdomain(&["stability", "--quick", "--out", s(&d)]));
    for method in ["naive", "max-shifted", "logdomain (max-shifted + log1p)"] {
        assert!(text.contains(method), "{text}");
    }
    let csv = std::fs::read_to_string(d.join("stability.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "function,family,param,rows,cols,method,max_ulp,median_ulp,nonfinite_share"
    );
    // Fields, with the quoted family names (which hold commas) kept whole.
    let split = |line: &str| -> Vec<String> {
        let mut fields = vec![String::new()];
        let mut quoted = false;
        for ch in line.chars() {
            match ch {
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(String::new()),
                _ => fields.last_mut().unwrap().push(ch),
            }
        }
        fields
    };
    let rows: Vec<Vec<String>> = lines.map(split).collect();
    assert!(rows.iter().all(|r| r.len() == 9), "{csv}");
    // Per family member: 2 functions × 3 methods.
    assert_eq!(rows.len() % 6, 0);
    // What the study is for: the naive log-sum-exp overflows with a 1e4 offset; logdomain's
    // is within a few ulp everywhere and never NaN or inf.
    let find = |func: &str, family: &str, method: &str| {
        rows.iter()
            .find(|r| r[0] == func && r[1].contains(family) && r[5] == method)
            .unwrap_or_else(|| panic!("{func} {family} {method} in {csv}"))
    };
    let naive = find("logsumexp", "offset 1e4", "naive");
    assert_eq!(naive[8], "1");
    for r in rows
        .iter()
        .filter(|r| r[5].starts_with("logdomain") && r[0] == "logsumexp")
    {
        assert_eq!(r[8], "0", "{r:?}");
        assert!(r[6].parse::<f64>().unwrap() <= 4.0, "{r:?}");
    }
    let svg = std::fs::read_to_string(d.join("stability.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("max error (ULP)"));
}

#[test]
fn fit_writes_scikit_learns_attributes_and_eval_reads_them() {
    let d = dir("fit");
    let (n, dims, k) = (600usize, 2usize, 3usize);
    let mut rng = Rng(77);
    let mut x = Vec::with_capacity(n * dims);
    for i in 0..n {
        let c = (i % k) as f32 * 8.0;
        x.push(c + rng.uniform(-1.0, 1.0));
        x.push(-c + rng.uniform(-1.0, 1.0));
    }
    let input = d.join("x.npy");
    write(&input, &[n as u64, dims as u64], &x);
    for (cov, cov_shape) in [
        ("full", vec![k, dims, dims]),
        ("diag", vec![k, dims]),
        ("spherical", vec![k]),
        ("tied", vec![dims, dims]),
    ] {
        let params = d.join(format!("{cov}.json"));
        let k_arg = k.to_string();
        let summary = ok(&logdomain(&[
            "fit",
            "--input",
            s(&input),
            "--components",
            &k_arg,
            "--covariance",
            cov,
            "--seed",
            "4",
            "--output",
            s(&params),
        ]));
        assert!(summary.contains("converged"), "{summary}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&params).unwrap()).unwrap();
        assert_eq!(v["covariance_type"], cov);
        assert_eq!(v["weights"].as_array().unwrap().len(), k);
        assert_eq!(v["means"].as_array().unwrap().len(), k);
        assert_eq!(v["means"][0].as_array().unwrap().len(), dims);
        for key in ["covariances", "precisions_cholesky"] {
            // Nested as scikit-learn's arrays.
            let mut shape = Vec::new();
            let mut at = &v[key];
            while let Some(a) = at.as_array() {
                shape.push(a.len());
                at = &a[0];
            }
            assert_eq!(shape, cov_shape, "{cov} {key}");
        }
        assert!(v["converged"].as_bool().unwrap());
        let n_iter = v["n_iter"].as_u64().unwrap() as usize;
        assert_eq!(v["lower_bounds"].as_array().unwrap().len(), n_iter);
        // The same fit through the library.
        let t = match cov {
            "full" => logdomain::CovarianceType::Full,
            "diag" => logdomain::CovarianceType::Diag,
            "tied" => logdomain::CovarianceType::Tied,
            _ => logdomain::CovarianceType::Spherical,
        };
        let lib = logdomain::GaussianMixture::new(k)
            .covariance_type(t)
            .seed(4)
            .fit(gpu(), &x, n, dims)
            .unwrap();
        assert_eq!(v["lower_bound"].as_f64().unwrap(), lib.lower_bound, "{cov}");
        assert_eq!(
            v["bic"].as_f64().unwrap(),
            lib.bic(gpu(), &x, n).unwrap(),
            "{cov}"
        );
        assert_eq!(
            v["aic"].as_f64().unwrap(),
            lib.aic(gpu(), &x, n).unwrap(),
            "{cov}"
        );
        assert_eq!(
            v["n_parameters"].as_u64().unwrap() as usize,
            lib.n_parameters()
        );
        // eval reads the file back: log p(x) as the library computes it.
        let logp = d.join(format!("{cov}-logp.npy"));
        ok(&logdomain(&[
            "eval",
            "gmm_score_samples",
            "--input",
            s(&input),
            "--gmm",
            s(&params),
            "--output",
            s(&logp),
        ]));
        let (_, got) = read(&logp);
        let want = lib.score_samples(gpu(), &x, n).unwrap();
        assert_eq!(bits(&got), bits(&want), "{cov}");
        // ...and fit starts from it.
        ok(&logdomain(&[
            "fit",
            "--input",
            s(&input),
            "--components",
            &k_arg,
            "--covariance",
            cov,
            "--init-gmm",
            s(&params),
            "--output",
            s(&d.join("again.json")),
        ]));
    }
    // `fit` of three diagonal components, seed 9, with `extra` options: the library's fit from
    // `init`, to the bit of its lower bound.
    let same_as_library = |extra: &[&str], init: logdomain::InitParams, what: &str| {
        let params = d.join(format!("init-{what}.json"));
        let mut args = vec![
            "fit",
            "--input",
            s(&input),
            "--components",
            "3",
            "--covariance",
            "diag",
            "--seed",
            "9",
            "--output",
            s(&params),
        ];
        args.extend_from_slice(extra);
        ok(&logdomain(&args));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&params).unwrap()).unwrap();
        let lib = logdomain::GaussianMixture::new(3)
            .covariance_type(logdomain::CovarianceType::Diag)
            .init_params(init)
            .seed(9)
            .fit(gpu(), &x, n, dims)
            .unwrap();
        assert_eq!(
            v["lower_bound"].as_f64().unwrap(),
            lib.lower_bound,
            "{what}"
        );
    };
    // Every initialisation by name (kmeans the default).
    for (name, init) in [
        ("kmeans", logdomain::InitParams::KMeans),
        ("k-means++", logdomain::InitParams::KMeansPlusPlus),
        ("random", logdomain::InitParams::Random),
        ("random_from_data", logdomain::InitParams::RandomFromData),
    ] {
        same_as_library(&["--init", name], init, name);
    }
    // --init-gmm with the means alone: scikit-learn's means_init over the --init start.
    let means: Vec<f32> = x[..3 * dims].to_vec();
    let means_json = d.join("means.json");
    std::fs::write(
        &means_json,
        serde_json::json!({ "means": means.chunks(dims).collect::<Vec<_>>() }).to_string(),
    )
    .unwrap();
    same_as_library(
        &["--init-gmm", s(&means_json)],
        logdomain::InitParams::GivenPartly {
            init: Box::new(logdomain::InitParams::KMeans),
            weights: None,
            means: Some(means),
            covariance: None,
        },
        "means",
    );
    let empty_json = d.join("empty.json");
    std::fs::write(&empty_json, "{}").unwrap();
    let out = d.join("out.json");
    fails(
        &[
            "fit",
            "--input",
            s(&input),
            "--components",
            "3",
            "--init-gmm",
            s(&empty_json),
            "--output",
            s(&out),
        ],
        &out,
        "none of weights, means",
    );
    // Bad input: one error line, no output, nothing clobbered.
    let mut bad = x.clone();
    bad[7] = f32::NAN;
    let bad_input = d.join("bad.npy");
    write(&bad_input, &[n as u64, dims as u64], &bad);
    let out = d.join("out.json");
    fails(
        &[
            "fit",
            "--input",
            s(&bad_input),
            "--components",
            "3",
            "--output",
            s(&out),
        ],
        &out,
        "finite",
    );
    fails(
        &[
            "fit",
            "--input",
            s(&input),
            "--components",
            "601",
            "--output",
            s(&out),
        ],
        &out,
        "n_samples",
    );
    // The points are memory-mapped: a truncated file is an error, not a short read.
    let bytes = std::fs::read(&input).unwrap();
    let cut = d.join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 6]).unwrap();
    fails(
        &[
            "fit",
            "--input",
            s(&cut),
            "--components",
            "3",
            "--output",
            s(&out),
        ],
        &out,
        "truncated",
    );
    fails(
        &[
            "eval",
            "gmm_score_samples",
            "--input",
            s(&cut),
            "--gmm",
            s(&d.join("diag.json")),
            "--output",
            s(&out),
        ],
        &out,
        "truncated",
    );
    let out2 = logdomain(&["fit", "--input", s(&input), "--output", s(&out)]);
    assert_eq!(
        out2.status.code(),
        Some(2),
        "missing --components is a usage error"
    );
}

/// `eval` on N-d arrays: `--axis` (repeated, negative, `none`) and `--keepdims`, C and Fortran
/// order read where they lie; the results match the library's N-d calls bit for bit.
#[test]
fn eval_reduces_any_axes_of_nd_arrays() {
    let gpu = gpu();
    let d = dir("axes");
    let mut rng = Rng(72);
    let shape = [4usize, 3, 5];
    let x = rng.vec(60, -6.0, 6.0);
    let xp = d.join("x.npy");
    write(&xp, &[4, 3, 5], &x);
    // The same array in Fortran order: entry (i, j, k) at i + 4 j + 12 k.
    let mut fx = vec![0.0f32; 60];
    for i in 0..4 {
        for j in 0..3 {
            for k in 0..5 {
                fx[i + 4 * j + 12 * k] = x[i * 15 + j * 5 + k];
            }
        }
    }
    let fp = d.join("xf.npy");
    let mut bytes = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[4, 3, 5])
        .order(npyz::Order::Fortran)
        .writer(&mut bytes)
        .begin_nd()
        .unwrap();
    w.extend(fx.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(&fp, bytes).unwrap();
    let cases: [(&str, logdomain::RowFn, &[&str], logdomain::Axes, bool); 5] = [
        (
            "logsumexp",
            logdomain::RowFn::Logsumexp,
            &["--axis", "0"],
            logdomain::Axes::from(0),
            false,
        ),
        (
            "logsumexp",
            logdomain::RowFn::Logsumexp,
            &["--axis", "0", "--axis", "-1", "--keepdims"],
            logdomain::Axes::from([0, -1]),
            true,
        ),
        (
            "logsumexp",
            logdomain::RowFn::Logsumexp,
            &["--axis", "none"],
            logdomain::Axes::All,
            false,
        ),
        (
            "softmax",
            logdomain::RowFn::Softmax,
            &["--axis", "1"],
            logdomain::Axes::from(1),
            false,
        ),
        (
            "log_softmax",
            logdomain::RowFn::LogSoftmax,
            &[],
            logdomain::Axes::from(-1),
            false,
        ),
    ];
    for (op, func, flags, axes, keepdims) in cases {
        let want = gpu.reduce_axes(func, &x, &shape, axes, keepdims).unwrap();
        let want_shape: Vec<u64> = want.shape.iter().map(|&v| v as u64).collect();
        for (input, order) in [(&xp, "C"), (&fp, "Fortran")] {
            let yp = d.join(format!("{op}_{order}.npy"));
            let mut args = vec!["eval", op, "--input", s(input), "--output", s(&yp)];
            args.extend(flags);
            let text = ok(&logdomain(&args));
            assert!(text.starts_with(op), "{text}");
            let (got_shape, got) = read(&yp);
            assert_eq!(got_shape, want_shape, "{op} {flags:?} {order}");
            let what = format!("{op} {flags:?} {order}");
            if order == "C" {
                assert_eq!(bits(&got), bits(&want.values), "{what}");
            } else {
                // Other strides fold differently (the kernels and the walk order agree, the
                // segment lengths may not): the same values within the contract.
                for (g, w) in got.iter().zip(&want.values) {
                    assert!(
                        (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{what}: {g} against {w}"
                    );
                }
            }
        }
    }
}

/// `eval cross_entropy` / `nll_loss` on PyTorch's (N, C, d1, …, dk): the library's bits, the
/// losses in the targets' shape; targets of the wrong shape are one error line, no output.
#[test]
fn eval_cross_entropy_on_the_class_axis() {
    use logdomain::{CrossEntropy, Reduction};
    let gpu = gpu();
    let d = dir("class_axis");
    let mut rng = Rng(73);
    let shape = [2usize, 3, 4, 5];
    let x = rng.vec(120, -4.0, 4.0);
    let t: Vec<i64> = (0..40).map(|i| if i == 7 { -100 } else { i % 3 }).collect();
    let (xp, tp, yp) = (d.join("x.npy"), d.join("t.npy"), d.join("loss.npy"));
    write(&xp, &[2, 3, 4, 5], &x);
    write(&tp, &[2, 4, 5], &t);
    for (op, reduction, flag) in [
        ("cross_entropy", Reduction::None, "none"),
        ("cross_entropy", Reduction::Mean, "mean"),
        ("nll_loss", Reduction::Sum, "sum"),
    ] {
        let o = CrossEntropy {
            reduction,
            ..Default::default()
        };
        let want = if op == "cross_entropy" {
            gpu.cross_entropy_nd(&x, &shape, &t, &o).unwrap()
        } else {
            gpu.nll_loss_nd(&x, &shape, &t, &o).unwrap()
        };
        let args = [
            "eval",
            op,
            "--input",
            s(&xp),
            "--targets",
            s(&tp),
            "--reduction",
            flag,
            "--output",
            s(&yp),
        ];
        ok(&logdomain(&args));
        let (got_shape, got) = read(&yp);
        let want_shape: Vec<u64> = want.shape.iter().map(|&v| v as u64).collect();
        assert_eq!(got_shape, want_shape, "{op} {flag}");
        assert_eq!(bits(&got), bits(&want.values), "{op} {flag}");
    }
    // Float32 targets of the input's shape are class probabilities.
    let probs: Vec<f32> = (0..120).map(|i| ((i % 7) as f32) / 10.0).collect();
    let pp = d.join("p.npy");
    write(&pp, &[2, 3, 4, 5], &probs);
    let o = CrossEntropy {
        reduction: Reduction::None,
        ..Default::default()
    };
    let want = gpu.cross_entropy_probs(&x, &shape, &probs, &o).unwrap();
    ok(&logdomain(&[
        "eval",
        "cross_entropy",
        "--input",
        s(&xp),
        "--targets",
        s(&pp),
        "--reduction",
        "none",
        "--output",
        s(&yp),
    ]));
    let (got_shape, got) = read(&yp);
    assert_eq!(got_shape, [2, 4, 5]);
    assert_eq!(bits(&got), bits(&want.values), "probabilities");
    let bad = d.join("bad.npy");
    write(&bad, &[2, 20], &t);
    let out_path = d.join("never.npy");
    let out = logdomain(&[
        "eval",
        "cross_entropy",
        "--input",
        s(&xp),
        "--targets",
        s(&bad),
        "--output",
        s(&out_path),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected (2, 4, 5)"), "{err}");
    assert!(!out_path.exists());
}

/// `eval linear_cross_entropy[_with_grad]`: the library's bits through `.npy` files, the lse
/// and every gradient written, and a mismatched weight is one error line with no output.
#[test]
fn eval_linear_cross_entropy_matches_the_library() {
    use logdomain::LinearCrossEntropy;
    let d = dir("linear");
    let (n, dims, v) = (6usize, 5usize, 9usize);
    let mut rng = Rng(5);
    let h = rng.vec(n * dims, -1.0, 1.0);
    let w = rng.vec(v * dims, -1.0, 1.0);
    let b = rng.vec(v, -0.5, 0.5);
    let t: Vec<i64> = vec![0, 8, 3, -100, 4, 4];
    let (hp, wp, bp, tp) = (
        d.join("h.npy"),
        d.join("w.npy"),
        d.join("b.npy"),
        d.join("t.npy"),
    );
    write(&hp, &[n as u64, dims as u64], &h);
    write(&wp, &[v as u64, dims as u64], &w);
    write(&bp, &[v as u64], &b);
    write(&tp, &[n as u64], &t);
    let (out, lse, dh, dw, db) = (
        d.join("loss.npy"),
        d.join("lse.npy"),
        d.join("dh.npy"),
        d.join("dw.npy"),
        d.join("db.npy"),
    );
    ok(&logdomain(&[
        "eval",
        "linear_cross_entropy_with_grad",
        "--input",
        s(&hp),
        "--weight-matrix",
        s(&wp),
        "--bias",
        s(&bp),
        "--targets",
        s(&tp),
        "--z-loss",
        "0.01",
        "--softcap",
        "4",
        "--label-smoothing",
        "0.1",
        "--lse-output",
        s(&lse),
        "--output",
        s(&out),
        "--grad-output",
        s(&dh),
        "--weight-grad-output",
        s(&dw),
        "--bias-grad-output",
        s(&db),
    ]));
    let mut o = LinearCrossEntropy {
        z_loss: 0.01,
        softcap: Some(4.0),
        ..LinearCrossEntropy::default()
    };
    o.ce.label_smoothing = 0.1;
    let want = gpu()
        .linear_cross_entropy_with_grad(&h, &w, Some(&b), n, dims, v, &t, &o)
        .unwrap();
    let (shape, loss) = read(&out);
    assert_eq!((shape, bits(&loss)), (vec![], bits(&want.loss)));
    assert_eq!(read(&lse), (vec![n as u64], want.lse.clone()));
    let (shape, got) = read(&dh);
    assert_eq!(
        (shape, bits(&got)),
        (vec![n as u64, dims as u64], bits(&want.d_hidden))
    );
    let (shape, got) = read(&dw);
    assert_eq!(
        (shape, bits(&got)),
        (vec![v as u64, dims as u64], bits(&want.d_weight))
    );
    let (shape, got) = read(&db);
    assert_eq!(
        (shape, bits(&got)),
        (vec![v as u64], bits(&want.d_bias.unwrap()))
    );
    // A weight with other columns than the hidden states: one line, no output.
    let bad = d.join("w4.npy");
    write(&bad, &[v as u64, 4], &vec![0.0f32; v * 4]);
    let out2 = d.join("loss2.npy");
    fails(
        &[
            "eval",
            "linear_cross_entropy",
            "--input",
            s(&hp),
            "--weight-matrix",
            s(&bad),
            "--targets",
            s(&tp),
            "--output",
            s(&out2),
        ],
        &out2,
        "columns",
    );
}

/// `eval cross_entropy[_with_grad]` with `--z-loss` / `--softcap` on (N, C) logits: the library's
/// `logit_cross_entropy` bits; refused with a message on other inputs.
#[test]
fn eval_cross_entropy_with_the_z_loss_and_the_soft_cap() {
    use logdomain::{CrossEntropy, LinearCrossEntropy, Reduction};
    let gpu = gpu();
    let d = dir("ce_extras");
    let mut rng = Rng(91);
    let x = rng.vec(6 * 10, -20.0, 20.0);
    let t: Vec<i64> = vec![1, 9, -100, 0, 4, 4];
    let (xp, tp, yp, gp) = (
        d.join("x.npy"),
        d.join("t.npy"),
        d.join("loss.npy"),
        d.join("g.npy"),
    );
    write(&xp, &[6, 10], &x);
    write(&tp, &[6], &t);
    let o = LinearCrossEntropy {
        ce: CrossEntropy {
            reduction: Reduction::Sum,
            ..Default::default()
        },
        z_loss: 1e-3,
        softcap: Some(8.0),
        ..Default::default()
    };
    let want = gpu
        .logit_cross_entropy_with_grad(&x, 6, 10, &t, &o)
        .unwrap();
    let common = [
        "--input",
        s(&xp),
        "--targets",
        s(&tp),
        "--reduction",
        "sum",
        "--z-loss",
        "1e-3",
        "--softcap",
        "8",
        "--output",
        s(&yp),
    ];
    let mut args = vec!["eval", "cross_entropy_with_grad", "--grad-output", s(&gp)];
    args.extend(common);
    ok(&logdomain(&args));
    assert_eq!(bits(&read(&yp).1), bits(&want.loss));
    let (g_shape, g) = read(&gp);
    assert_eq!(g_shape, vec![6, 10]);
    assert_eq!(bits(&g), bits(&want.d_logits));
    let mut args = vec!["eval", "cross_entropy"];
    args.extend(common);
    ok(&logdomain(&args));
    assert_eq!(bits(&read(&yp).1), bits(&want.loss));
    // nll_loss and N-d inputs do not take them.
    let (np, ntp, none) = (d.join("x3.npy"), d.join("t3.npy"), d.join("none.npy"));
    write(&np, &[2, 3, 10], &x);
    write(&ntp, &[2, 10], &[0i64; 20]);
    fails(
        &[
            "eval",
            "nll_loss",
            "--input",
            s(&xp),
            "--targets",
            s(&tp),
            "--softcap",
            "8",
            "--output",
            s(&none),
        ],
        &none,
        "--z-loss and --softcap apply to",
    );
    fails(
        &[
            "eval",
            "cross_entropy",
            "--input",
            s(&np),
            "--targets",
            s(&ntp),
            "--z-loss",
            "0.1",
            "--output",
            s(&none),
        ],
        &none,
        "not to cross_entropy of a (2, 3, 10) input",
    );
}
