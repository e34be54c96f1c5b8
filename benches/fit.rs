//! EM fit of a Gaussian mixture on the GPU against scikit-learn: the same data and initial
//! parameters (written by `benches/anchors/sklearn_gmm.py --data-out`), a fixed number of
//! iterations (tol 0), wall time of the whole fit (upload, every E-step on the GPU, M-steps on
//! the host), the lower bound per iteration against scikit-learn's, and a plot of both.
//!
//! ```sh
//! python3 benches/anchors/sklearn_gmm.py --covariance diag \
//!     --data-out /tmp/em/x.npy --lower-bounds-out /tmp/em/sklearn-diag.json
//! WGPU_BACKEND=vulkan cargo bench --bench fit -- --data /tmp/em/x.npy --covariance diag \
//!     --sklearn /tmp/em/sklearn-diag.json --plot docs/em_diag.svg
//! ```
//!
//! Options: `--data PATH` (a 2-D float32 .npy; its init JSON beside it, `.init.json` in place
//! of `.npy`), `--covariance full|diag|spherical`, `--components K` (16), `--iters N` (20),
//! `--runs R` (3; the median is printed), `--sklearn PATH` (a JSON list of scikit-learn's lower
//! bounds per iteration), `--plot PATH` (SVG).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use logdomain::{Covariance, CovarianceType, GaussianMixture, Gmm, Gpu, InitParams};
use plotters::prelude::*;

struct Args {
    data: PathBuf,
    covariance: CovarianceType,
    components: usize,
    iters: usize,
    runs: usize,
    sklearn: Option<PathBuf>,
    plot: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        data: PathBuf::from("/tmp/em/x.npy"),
        covariance: CovarianceType::Diag,
        components: 16,
        iters: 20,
        runs: 3,
        sklearn: None,
        plot: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--bench" => {}
            "--data" => a.data = value().into(),
            "--covariance" => {
                a.covariance = match value().as_str() {
                    "full" => CovarianceType::Full,
                    "diag" => CovarianceType::Diag,
                    "spherical" => CovarianceType::Spherical,
                    "tied" => CovarianceType::Tied,
                    other => panic!("--covariance {other}: full, diag, spherical or tied"),
                }
            }
            "--components" => a.components = value().parse().expect("--components"),
            "--iters" => a.iters = value().parse().expect("--iters"),
            "--runs" => a.runs = value().parse().expect("--runs"),
            "--sklearn" => a.sklearn = Some(value().into()),
            "--plot" => a.plot = Some(value().into()),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn floats(v: &serde_json::Value, key: &str) -> Vec<f32> {
    fn flat(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
            x => out.push(x.as_f64().expect("numbers") as f32),
        }
    }
    let mut out = Vec::new();
    flat(&v[key], &mut out);
    out
}

fn main() {
    let a = args();
    let bytes = std::fs::read(&a.data).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it first with benches/anchors/sklearn_gmm.py --data-out",
            a.data.display()
        )
    });
    let npy = npyz::NpyFile::new(&bytes[..]).expect(".npy");
    let shape = npy.shape().to_vec();
    let x: Vec<f32> = npy.into_vec().expect("float32 data");
    let (n, d) = (shape[0] as usize, shape[1] as usize);
    let init_path = a.data.with_extension("init.json");
    let init: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&init_path).expect("init JSON"))
            .expect("init JSON");
    let covariance = match a.covariance {
        CovarianceType::Full => Covariance::Full(floats(&init, "precisions_cholesky")),
        CovarianceType::Diag => Covariance::Diag(floats(&init, "covariances")),
        CovarianceType::Spherical => Covariance::Spherical(floats(&init, "covariances")),
        CovarianceType::Tied => Covariance::Tied(floats(&init, "precisions_cholesky")),
    };
    let given = Gmm {
        weights: floats(&init, "weights"),
        means: floats(&init, "means"),
        covariance,
    };
    let gpu = Gpu::new().expect("an adapter");
    println!("adapter: {}", gpu.info());
    let gm = GaussianMixture::new(a.components)
        .covariance_type(a.covariance)
        .tol(0.0)
        .max_iter(a.iters)
        .init_params(InitParams::Given(given));
    let mut times: Vec<Duration> = Vec::new();
    let mut fit = None;
    for _ in 0..a.runs {
        let t = Instant::now();
        fit = Some(gm.fit(&gpu, &x, n, d).expect("fit"));
        times.push(t.elapsed());
    }
    times.sort();
    let fit = fit.expect("at least one run");
    let median = times[times.len() / 2];
    println!(
        "fit {n} x {d}, {} {} components, {} iterations: median {:.2} s of {} runs ({:.0} ms per \
         iteration), final lower bound {:.10}",
        a.components,
        a.covariance.name(),
        fit.n_iter,
        median.as_secs_f64(),
        a.runs,
        median.as_secs_f64() * 1e3 / fit.n_iter as f64,
        fit.lower_bound
    );
    let Some(path) = &a.sklearn else { return };
    let sk: Vec<f64> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("scikit-learn JSON"))
            .expect("a JSON list");
    let worst = fit
        .lower_bounds
        .iter()
        .zip(&sk)
        .map(|(g, w)| (g - w).abs() / w.abs())
        .fold(0.0, f64::max);
    println!(
        "lower bound per iteration vs scikit-learn: largest relative difference {worst:.2e} over \
         {} iterations",
        fit.lower_bounds.len().min(sk.len())
    );
    let Some(svg) = &a.plot else { return };
    let lo = fit
        .lower_bounds
        .iter()
        .chain(&sk)
        .cloned()
        .fold(f64::INFINITY, f64::min);
    let hi = fit
        .lower_bounds
        .iter()
        .chain(&sk)
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = 0.05 * (hi - lo).max(1e-9);
    let root = SVGBackend::new(svg, (720, 420)).into_drawing_area();
    root.fill(&WHITE).expect("plot");
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "EM lower bound, {n} x {d}, {} {} components (largest rel. diff {worst:.1e})",
                a.components,
                a.covariance.name()
            ),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..a.iters as f64 + 0.5, lo - pad..hi + pad)
        .expect("plot");
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("mean log-likelihood per point")
        .draw()
        .expect("plot");
    let ours: Vec<(f64, f64)> = fit
        .lower_bounds
        .iter()
        .enumerate()
        .map(|(i, &v)| ((i + 1) as f64, v))
        .collect();
    let theirs: Vec<(f64, f64)> = sk
        .iter()
        .enumerate()
        .map(|(i, &v)| ((i + 1) as f64, v))
        .collect();
    let name = format!("logdomain ({}, {:?})", gpu.info().name, gpu.info().backend);
    chart
        .draw_series(LineSeries::new(theirs.clone(), BLUE.stroke_width(4)))
        .expect("plot")
        .label("scikit-learn 1.9.1 (f64, CPU)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(4)));
    chart
        .draw_series(LineSeries::new(ours.clone(), RED.stroke_width(2)))
        .expect("plot")
        .label(name)
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .draw_series(ours.iter().map(|&p| Circle::new(p, 3, RED.filled())))
        .expect("plot");
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .expect("plot");
    root.present().expect("plot");
    println!("wrote {}", svg.display());
}
