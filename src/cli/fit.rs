//! `logdomain fit`: a Gaussian mixture fitted by EM to the points of a `.npy` file, written as
//! scikit-learn-style JSON (which `eval gmm_score_samples --gmm` reads back).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use logdomain::{CovarianceType, FittedGmm, GaussianMixture, Gpu, InitParams};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lower")]
pub enum CovarianceArg {
    Full,
    Tied,
    Diag,
    Spherical,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitArg {
    /// The labels of a k-means run, its assignments and centroid sums on the GPU
    /// (scikit-learn's default `kmeans`).
    #[value(name = "kmeans")]
    KMeans,
    /// k-means++ seeding on GPU-evaluated distances (scikit-learn's `k-means++`).
    #[value(name = "k-means++")]
    KMeansPlusPlus,
    /// Random responsibilities, then one M-step (scikit-learn's `random`).
    #[value(name = "random")]
    Random,
    /// Distinct points drawn at random, each a component's mean (scikit-learn's
    /// `random_from_data`).
    #[value(name = "random_from_data")]
    RandomFromData,
}

/// Arguments of `fit`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  logdomain fit --input x.npy --components 16 --covariance diag --output params.json
  logdomain fit --input x.npy --components 5 --init-gmm start.json --output params.json
  logdomain eval gmm_score_samples --input x.npy --gmm params.json --output logp.npy

The JSON has scikit-learn's attribute names: weights, means, covariances (k x d x d, k x d, k
or d x d for full, diag, spherical, tied), precisions_cholesky (same layout), lower_bound, lower_bounds (per iteration), n_iter,
converged, covariance_type; and bic and aic on the fitted points, with n_parameters.")]
pub struct FitArgs {
    /// Points: a 2-D float32 .npy file (n × dims, C order).
    #[arg(long)]
    pub input: PathBuf,
    /// Number of mixture components.
    #[arg(long)]
    pub components: usize,
    /// Covariance type.
    #[arg(long, value_enum, default_value = "full")]
    pub covariance: CovarianceArg,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Convergence threshold on the lower bound's change.
    #[arg(long, default_value_t = 1e-3)]
    pub tol: f64,
    /// Added to the covariances' diagonals.
    #[arg(long, default_value_t = 1e-6)]
    pub reg_covar: f64,
    /// EM iterations per initialisation.
    #[arg(long, default_value_t = 100)]
    pub max_iter: usize,
    /// Initialisations (the best lower bound is kept).
    #[arg(long, default_value_t = 1)]
    pub n_init: usize,
    /// How the parameters start (with --init-gmm: those the file does not give).
    #[arg(long, value_enum, default_value = "kmeans")]
    pub init: InitArg,
    /// Start from these parameters (JSON as `eval --gmm` reads; covariance_type must match):
    /// weights, means and covariances (`covariances`, or `precisions_cholesky` for full and
    /// tied), each optional, as scikit-learn's weights_init, means_init and precisions_init.
    #[arg(long)]
    pub init_gmm: Option<PathBuf>,
    /// Where to write the fitted parameters (JSON).
    #[arg(long)]
    pub output: PathBuf,
}

/// `v` (flat, row-major) as nested lists of `shape`.
fn nested(v: &[f64], shape: &[usize]) -> Value {
    match shape {
        [] | [_] => json!(v),
        [first, rest @ ..] => {
            let per: usize = rest.iter().product();
            Value::Array(
                (0..*first)
                    .map(|i| nested(&v[i * per..(i + 1) * per], rest))
                    .collect(),
            )
        }
    }
}

/// The fitted parameters as scikit-learn's attributes.
pub fn to_json(fit: &FittedGmm) -> Value {
    let (k, d) = (fit.n_components(), fit.dims);
    let cov_shape: Vec<usize> = match fit.covariance_type {
        CovarianceType::Full => vec![k, d, d],
        CovarianceType::Diag => vec![k, d],
        CovarianceType::Spherical => vec![k],
        CovarianceType::Tied => vec![d, d],
    };
    json!({
        "covariance_type": fit.covariance_type.name(),
        // The weights the kernels read (renormalised in f32), so that `eval --gmm` gives the
        // library's log p(x) bit for bit.
        "weights": fit.gmm.weights.iter().map(|&w| f64::from(w)).collect::<Vec<f64>>(),
        "means": nested(&fit.means, &[k, d]),
        "covariances": nested(&fit.covariances, &cov_shape),
        "precisions_cholesky": nested(&fit.precisions_cholesky, &cov_shape),
        "lower_bound": fit.lower_bound,
        "lower_bounds": fit.lower_bounds,
        "n_iter": fit.n_iter,
        "converged": fit.converged,
    })
}

/// Writes `text` to a temporary file beside `path`, then renames it into place.
fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = super::partial_path(path)?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.flush()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

/// Reads the files, fits on the GPU `gpu` makes, writes the JSON; returns the summary line.
pub fn run(a: &FitArgs, gpu: impl FnOnce() -> Result<Gpu, String>) -> Result<String, String> {
    let x = super::npy::read_f32_mapped(&a.input)?;
    let (n, d) = x.matrix(&a.input)?;
    let covariance_type = match a.covariance {
        CovarianceArg::Full => CovarianceType::Full,
        CovarianceArg::Diag => CovarianceType::Diag,
        CovarianceArg::Spherical => CovarianceType::Spherical,
        CovarianceArg::Tied => CovarianceType::Tied,
    };
    let base = match a.init {
        InitArg::Random => InitParams::Random,
        InitArg::RandomFromData => InitParams::RandomFromData,
        InitArg::KMeansPlusPlus => InitParams::KMeansPlusPlus,
        InitArg::KMeans => InitParams::KMeans,
    };
    let init = match &a.init_gmm {
        Some(path) => {
            let parts = super::eval::read_gmm_parts(path, covariance_type.name())?;
            match parts {
                super::eval::GmmParts {
                    weights: Some(weights),
                    means: Some(means),
                    covariance: Some(covariance),
                    ..
                } => InitParams::Given(logdomain::Gmm {
                    weights,
                    means,
                    covariance,
                }),
                super::eval::GmmParts {
                    weights: None,
                    means: None,
                    covariance: None,
                    covariance_key,
                } => {
                    return Err(format!(
                        "{}: none of weights, means, {covariance_key}",
                        path.display()
                    ));
                }
                parts => InitParams::GivenPartly {
                    init: Box::new(base),
                    weights: parts.weights,
                    means: parts.means,
                    covariance: parts.covariance,
                },
            }
        }
        None => base,
    };
    let gm = GaussianMixture::new(a.components)
        .covariance_type(covariance_type)
        .tol(a.tol)
        .reg_covar(a.reg_covar)
        .max_iter(a.max_iter)
        .n_init(a.n_init)
        .init_params(init)
        .seed(a.seed);
    // Every file and option checked before the adapter is touched.
    gm.validate(x.data(), n, d)
        .map_err(|e| format!("{}: {e}", a.input.display()))?;
    let gpu = gpu()?;
    let bar = ProgressBar::new(a.max_iter as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} iterations {msg}")
            .map_err(|e| e.to_string())?,
    );
    let start = std::time::Instant::now();
    let fit = gm
        .fit_with_progress(&gpu, x.data(), n, d, |p| {
            bar.set_position(p.iter as u64);
            let init = if a.n_init > 1 {
                format!("init {}/{} ", p.init + 1, a.n_init)
            } else {
                String::new()
            };
            bar.set_message(format!("{init}lower bound {:.6}", p.lower_bound));
        })
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    let mut json = to_json(&fit);
    json["n_parameters"] = fit.n_parameters().into();
    json["bic"] = fit
        .bic(&gpu, x.data(), n)
        .map_err(|e| e.to_string())?
        .into();
    json["aic"] = fit
        .aic(&gpu, x.data(), n)
        .map_err(|e| e.to_string())?
        .into();
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    write_atomic(&a.output, &(text + "\n"))?;
    Ok(format!(
        "fit {n} x {d} points, {} {} components on {}: {} iterations ({}), lower bound {:.6}, \
         {:.2} s; wrote {}",
        a.components,
        covariance_type.name(),
        gpu.info().name,
        fit.n_iter,
        if fit.converged {
            "converged"
        } else {
            "not converged"
        },
        fit.lower_bound,
        elapsed.as_secs_f64(),
        a.output.display()
    ))
}
