//! `logdomain eval OP`: any op of the crate on `.npy` files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use logdomain::{
    Axes, Bce, Covariance, CrossEntropy, GaussianNll, Gmm, Gpu, LinearCrossEntropy,
    LinearCrossEntropyGrads, NdLayout, PoissonNll, Reduction, RowFn,
};

use super::npy;

/// The ops, named as the library's functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum EvalOp {
    Logsumexp,
    Softmax,
    LogSoftmax,
    CrossEntropy,
    NllLoss,
    GaussianNll,
    BinaryCrossEntropyWithLogits,
    PoissonNll,
    LogProd,
    GmmScoreSamples,
    GmmLogResponsibilities,
    LogsumexpBackward,
    LogSoftmaxBackward,
    SoftmaxBackward,
    CrossEntropyWithGrad,
    GaussianNllWithGrad,
    BinaryCrossEntropyWithLogitsWithGrad,
    PoissonNllWithGrad,
    LinearCrossEntropy,
    LinearCrossEntropyWithGrad,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReductionArg {
    None,
    Sum,
    Mean,
}

impl From<ReductionArg> for Reduction {
    fn from(r: ReductionArg) -> Reduction {
        match r {
            ReductionArg::None => Reduction::None,
            ReductionArg::Sum => Reduction::Sum,
            ReductionArg::Mean => Reduction::Mean,
        }
    }
}

/// Arguments of `eval`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  logdomain eval log_softmax --input logits.npy --output log_probs.npy
  logdomain eval logsumexp --input log_weights.npy --axis 0 --keepdims --output lse.npy
  logdomain eval softmax --input scores.npy --axis 1 --axis -1 --output p.npy
  logdomain eval cross_entropy --input logits.npy --targets t.npy --label-smoothing 0.1 --output loss.npy
  logdomain eval cross_entropy --input seg_logits_NCHW.npy --targets labels_NHW.npy --reduction none --output loss_NHW.npy
  logdomain eval gaussian_nll --input mu.npy --targets y.npy --var var.npy --reduction none --output nll.npy
  logdomain eval gmm_score_samples --input points.npy --gmm params.json --output logp.npy
  logdomain eval log_softmax_backward --input log_probs.npy --grad g.npy --output dx.npy
  logdomain eval cross_entropy_with_grad --input logits.npy --targets t.npy --output loss.npy --grad-output dlogits.npy
  logdomain eval linear_cross_entropy --input h.npy --weight-matrix w.npy --targets t.npy --output loss.npy
  logdomain eval linear_cross_entropy_with_grad --input h.npy --weight-matrix w.npy --targets t.npy --z-loss 1e-4 --output loss.npy --grad-output dh.npy --weight-grad-output dw.npy")]
pub struct EvalArgs {
    /// The op, named as the library function.
    #[arg(value_enum)]
    pub op: EvalOp,
    /// The input: f32 `.npy`, 2-D (rows × cols; points n × dims for the mixtures; 1-D accepted
    /// for the element-wise losses); any number of dimensions (up to 8) in C or Fortran order for
    /// logsumexp, softmax and log_softmax; for cross_entropy and nll_loss also PyTorch's (C,) and
    /// (N, C, d1, …, dk), C order, the classes on axis 1.
    #[arg(long)]
    pub input: PathBuf,
    /// logsumexp, softmax, log_softmax: an axis to reduce over (repeat for several; negative ones
    /// count from the end; `none` for every axis, SciPy's `axis=None`). Without it, the last axis
    /// (row by row).
    #[arg(long, allow_negative_numbers = true)]
    pub axis: Vec<String>,
    /// logsumexp: keep the reduced axes as dimensions of size 1.
    #[arg(long)]
    pub keepdims: bool,
    /// Targets: int64 class indices (cross_entropy, nll_loss; the input's shape without the class
    /// axis) or f32 values shaped as the input (class probabilities for cross_entropy;
    /// gaussian_nll, binary_cross_entropy_with_logits, poisson_nll).
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Variances for gaussian_nll: f32, shaped as the input or a single value.
    #[arg(long)]
    pub var: Option<PathBuf>,
    /// Class weights (cross_entropy, nll_loss) or pos_weight per column (BCE): 1-D f32.
    #[arg(long)]
    pub weight: Option<PathBuf>,
    /// The mixture for gmm_*: JSON with `weights`, `means`, `covariance_type` (diag, spherical,
    /// full) and `covariances` (diag, spherical) or `precisions_cholesky` (full), in
    /// scikit-learn's layouts.
    #[arg(long)]
    pub gmm: Option<PathBuf>,
    /// The reduction of the losses (PyTorch's default: mean).
    #[arg(long, value_enum, default_value = "mean")]
    pub reduction: ReductionArg,
    /// Targets equal to this are ignored (cross_entropy, nll_loss).
    #[arg(long, default_value_t = -100, allow_negative_numbers = true)]
    pub ignore_index: i64,
    /// Label smoothing in [0, 1] (cross_entropy).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,
    /// Add the constant terms (gaussian_nll, poisson_nll).
    #[arg(long)]
    pub full: bool,
    /// eps of gaussian_nll (default 1e-6) or poisson_nll (default 1e-8).
    #[arg(long)]
    pub eps: Option<f32>,
    /// poisson_nll: the input holds rates, not log-rates.
    #[arg(long)]
    pub rates: bool,
    /// The gradient of the loss with respect to the forward's output, for the *_backward ops
    /// (f32: per row for logsumexp_backward, shaped as the input otherwise).
    #[arg(long)]
    pub grad: Option<PathBuf>,
    /// The forward's log-sum-exp per row, for logsumexp_backward (f32, rows).
    #[arg(long)]
    pub lse: Option<PathBuf>,
    /// Where the *_with_grad ops write the gradient with respect to the input.
    #[arg(long)]
    pub grad_output: Option<PathBuf>,
    /// Where gaussian_nll_with_grad writes the gradient with respect to the variance.
    #[arg(long)]
    pub var_grad_output: Option<PathBuf>,
    /// linear_cross_entropy: the classifier's weight, f32 `vocab × dims` (as `torch.nn.Linear`
    /// stores it); the input holds the hidden states, `tokens × dims`.
    #[arg(long)]
    pub weight_matrix: Option<PathBuf>,
    /// linear_cross_entropy: the classifier's bias, f32 `vocab`.
    #[arg(long)]
    pub bias: Option<PathBuf>,
    /// linear_cross_entropy, and cross_entropy of (N, C) logits: z_loss · lse² is added to each
    /// token's loss.
    #[arg(long, default_value_t = 0.0)]
    pub z_loss: f32,
    /// linear_cross_entropy, and cross_entropy of (N, C) logits: soft-cap the logits,
    /// cap · tanh(z / cap).
    #[arg(long)]
    pub softcap: Option<f32>,
    /// linear_cross_entropy_with_grad: skip the gradient products of blocks whose softmax
    /// entries are all below 2⁻²⁴ (Cut Cross-Entropy's filtering).
    #[arg(long)]
    pub grad_filter: bool,
    /// linear_cross_entropy: where to write each token's log-sum-exp.
    #[arg(long)]
    pub lse_output: Option<PathBuf>,
    /// linear_cross_entropy_with_grad: where to write the gradient with respect to the weight
    /// (`--grad-output` gets the one with respect to the hidden states).
    #[arg(long)]
    pub weight_grad_output: Option<PathBuf>,
    /// linear_cross_entropy_with_grad: where to write the gradient with respect to the bias.
    #[arg(long)]
    pub bias_grad_output: Option<PathBuf>,
    /// Where to write the result (the loss, for the *_with_grad ops; f32 `.npy`); every output
    /// is written only when all are complete.
    #[arg(long)]
    pub output: PathBuf,
}

/// `linear_cross_entropy[_with_grad]`: hidden states (`--input`), the weight matrix, targets,
/// an optional bias, the cross-entropy options, the z-loss and the soft cap.
fn run_linear(a: &EvalArgs, gpu: impl FnOnce() -> Result<Gpu, String>) -> Result<String, String> {
    let h = npy::read_f32(&a.input)?;
    let (n, d) = h.matrix(&a.input)?;
    let wp = need(&a.weight_matrix, "--weight-matrix", a.op)?;
    let w = npy::read_f32(wp)?;
    let (v, wd) = w.matrix(wp)?;
    if wd != d {
        return Err(format!(
            "{}: the weight has {wd} columns; the hidden states have {d} (the weight is vocab × dims)",
            wp.display()
        ));
    }
    let tp = need(&a.targets, "--targets", a.op)?;
    let t = npy::read_targets(tp)?;
    if t.shape != [n as u64] {
        return Err(format!(
            "{}: targets shape {:?}; expected ({n},) for {n} hidden states",
            tp.display(),
            t.shape
        ));
    }
    let vector = |p: &Path, what: &str, len: usize| -> Result<Vec<f32>, String> {
        let x = npy::read_f32(p)?;
        if x.shape != [len as u64] {
            return Err(format!(
                "{}: {what} shape {:?}; expected ({len},)",
                p.display(),
                x.shape
            ));
        }
        Ok(x.data)
    };
    let bias = match &a.bias {
        Some(p) => Some(vector(p, "bias", v)?),
        None => None,
    };
    let weight = match &a.weight {
        Some(p) => Some(vector(p, "class weights", v)?),
        None => None,
    };
    let reduction = Reduction::from(a.reduction);
    let o = LinearCrossEntropy {
        ce: CrossEntropy {
            weight,
            ignore_index: a.ignore_index,
            label_smoothing: a.label_smoothing,
            reduction,
        },
        z_loss: a.z_loss,
        softcap: a.softcap,
        grad_filter: a.grad_filter,
    };
    let with_grad = a.op == EvalOp::LinearCrossEntropyWithGrad;
    let grad_paths = if with_grad {
        Some((
            need(&a.grad_output, "--grad-output", a.op)?,
            need(&a.weight_grad_output, "--weight-grad-output", a.op)?,
        ))
    } else {
        None
    };
    if a.bias_grad_output.is_some() && (!with_grad || bias.is_none()) {
        return Err("--bias-grad-output needs linear_cross_entropy_with_grad and --bias".into());
    }
    let gpu = gpu()?;
    let start = Instant::now();
    let g = if with_grad {
        gpu.linear_cross_entropy_with_grad(&h.data, &w.data, bias.as_deref(), n, d, v, &t.data, &o)
            .map_err(lib)?
    } else {
        let (loss, lse) = gpu
            .linear_cross_entropy_with_lse(&h.data, &w.data, bias.as_deref(), n, d, v, &t.data, &o)
            .map_err(lib)?;
        LinearCrossEntropyGrads {
            loss,
            lse,
            d_hidden: vec![],
            d_weight: vec![],
            d_bias: None,
        }
    };
    let elapsed = start.elapsed();
    let loss_shape = if reduction == Reduction::None {
        vec![n as u64]
    } else {
        vec![]
    };
    let (lse_shape, dh_shape, dw_shape, db_shape) = (
        [n as u64],
        [n as u64, d as u64],
        [v as u64, d as u64],
        [v as u64],
    );
    let mut files: Vec<(&Path, &[u64], &[f32])> = vec![(&a.output, &loss_shape, &g.loss)];
    if let Some(p) = &a.lse_output {
        files.push((p, &lse_shape, &g.lse));
    }
    if let Some((dh, dw)) = grad_paths {
        files.push((dh, &dh_shape, &g.d_hidden));
        files.push((dw, &dw_shape, &g.d_weight));
    }
    if let (Some(p), Some(db)) = (&a.bias_grad_output, &g.d_bias) {
        files.push((p, &db_shape, db));
    }
    npy::write_all(&files)?;
    let also: String = files[1..]
        .iter()
        .map(|(p, s, _)| format!(", {} ({} f32)", p.display(), dims(s)))
        .collect();
    Ok(format!(
        "{}: {} ({}) × {} ({}) -> {} ({} f32){also} in {:.1} ms on {}",
        op_name(a.op),
        a.input.display(),
        dims(&h.shape),
        wp.display(),
        dims(&w.shape),
        a.output.display(),
        dims(&loss_shape),
        elapsed.as_secs_f64() * 1e3,
        gpu.info()
    ))
}

/// The op's name on the command line (the library function's).
pub fn op_name(op: EvalOp) -> String {
    op.to_possible_value()
        .map_or_else(|| format!("{op:?}"), |v| v.get_name().to_string())
}

fn need<'a>(path: &'a Option<PathBuf>, flag: &str, op: EvalOp) -> Result<&'a Path, String> {
    path.as_deref()
        .ok_or_else(|| format!("{} needs {flag}", op_name(op)))
}

fn lib(e: logdomain::Error) -> String {
    e.to_string()
}

/// The shape of a categorical input's per-sample losses and targets: PyTorch's, the input's
/// without the class axis (axis 1; axis 0 of a 1-D input).
fn sample_shape(shape: &[u64]) -> Vec<u64> {
    match shape {
        [] | [_] => Vec::new(),
        [n, _, rest @ ..] => std::iter::once(*n).chain(rest.iter().copied()).collect(),
    }
}

/// A shape as NumPy prints it: `()`, `(4,)`, `(2, 4, 5)`.
fn tuple(shape: &[u64]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn dims(shape: &[u64]) -> String {
    if shape.is_empty() {
        "scalar".into()
    } else {
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" × ")
    }
}

/// Flattens a JSON number or nested arrays of numbers into f32s.
fn numbers(v: &serde_json::Value, key: &str, out: &mut Vec<f32>) -> Result<(), String> {
    match v {
        serde_json::Value::Number(n) => {
            out.push(
                n.as_f64()
                    .ok_or_else(|| format!("{key}: {n} is not a number"))? as f32,
            );
            Ok(())
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(|i| numbers(i, key, out)),
        other => Err(format!("{key}: expected numbers, found {other}")),
    }
}

/// A mixture from scikit-learn-style JSON.
pub fn read_gmm(path: &Path) -> Result<Gmm, String> {
    let parts = read_gmm_parts(path, "diag")?;
    let missing = |key: &str| format!("{}: missing key `{key}`", path.display());
    Ok(Gmm {
        weights: parts.weights.ok_or_else(|| missing("weights"))?,
        means: parts.means.ok_or_else(|| missing("means"))?,
        covariance: parts
            .covariance
            .ok_or_else(|| missing(parts.covariance_key))?,
    })
}

/// A mixture's parameters as a JSON file may give them, each optional: scikit-learn's
/// `weights_init`, `means_init` and (as `covariances` or `precisions_cholesky`) the
/// covariances.
pub struct GmmParts {
    pub weights: Option<Vec<f32>>,
    pub means: Option<Vec<f32>>,
    pub covariance: Option<Covariance>,
    /// The key the covariances are read from.
    pub covariance_key: &'static str,
}

/// The parameters a JSON file holds (scikit-learn's attribute names), the covariance type
/// `default_kind` where the file names none.
pub fn read_gmm_parts(path: &Path, default_kind: &str) -> Result<GmmParts, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON ({e})", path.display()))?;
    let get = |key: &str| -> Result<Option<Vec<f32>>, String> {
        let Some(v) = json.get(key) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        numbers(v, key, &mut out).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(out))
    };
    let kind = json
        .get("covariance_type")
        .and_then(|v| v.as_str())
        .unwrap_or(default_kind);
    let (covariance, covariance_key) = match kind {
        "diag" => (get("covariances")?.map(Covariance::Diag), "covariances"),
        "spherical" => (
            get("covariances")?.map(Covariance::Spherical),
            "covariances",
        ),
        "full" => (
            get("precisions_cholesky")?.map(Covariance::Full),
            "precisions_cholesky",
        ),
        "tied" => (
            get("precisions_cholesky")?.map(Covariance::Tied),
            "precisions_cholesky",
        ),
        other => {
            return Err(format!(
                "{}: covariance_type {other:?}; expected diag, spherical, full or tied",
                path.display()
            ));
        }
    };
    Ok(GmmParts {
        weights: get("weights")?,
        means: get("means")?,
        covariance,
        covariance_key,
    })
}

/// `gmm_score_samples` and `gmm_log_responsibilities`: the points memory-mapped (any number:
/// the library takes them in batches that fit the device).
fn run_gmm(a: &EvalArgs, gpu: impl FnOnce() -> Result<Gpu, String>) -> Result<String, String> {
    let x = npy::read_f32_mapped(&a.input)?;
    let (n, d) = x.matrix(&a.input)?;
    let gmm = read_gmm(need(&a.gmm, "--gmm", a.op)?)?;
    let gpu = gpu()?;
    let lib = |e: logdomain::Error| format!("{}: {e}", a.input.display());
    let start = std::time::Instant::now();
    let (out, shape) = if a.op == EvalOp::GmmScoreSamples {
        let v = gpu.gmm_score_samples(x.data(), n, d, &gmm).map_err(lib)?;
        (v, vec![n as u64])
    } else {
        let k = gmm.weights.len() as u64;
        let v = gpu
            .gmm_log_responsibilities(x.data(), n, d, &gmm)
            .map_err(lib)?;
        (v, vec![n as u64, k])
    };
    let elapsed = start.elapsed();
    npy::write_all(&[(&a.output, &shape, &out)])?;
    Ok(summary(a, &x.shape, &shape, "", elapsed, &gpu))
}

/// The line `eval` prints: op, input and output files with their shapes, time, adapter.
fn summary(
    a: &EvalArgs,
    in_shape: &[u64],
    out_shape: &[u64],
    also: &str,
    elapsed: std::time::Duration,
    gpu: &Gpu,
) -> String {
    format!(
        "{}: {} ({}) -> {} ({} f32){also} in {:.1} ms on {}",
        op_name(a.op),
        a.input.display(),
        dims(in_shape),
        a.output.display(),
        dims(out_shape),
        elapsed.as_secs_f64() * 1e3,
        gpu.info()
    )
}

/// What the op reads besides the input, read and checked before any GPU work.
enum Extra {
    None,
    Classes(Vec<i64>),
    /// Class probabilities shaped as the logits (cross_entropy).
    Probabilities(Vec<f32>),
    Values(Vec<f32>),
    Gaussian(Vec<f32>, Vec<f32>),
    /// The upstream gradient and, for logsumexp_backward, the saved log-sum-exp.
    Backward(Vec<f32>, Vec<f32>),
}

/// `--axis` as SciPy's `axis`: `none` for all, else the listed axes; the last axis by default.
fn axes_arg(a: &EvalArgs) -> Result<Axes, String> {
    if a.axis.is_empty() {
        return Ok(Axes::from(-1));
    }
    if a.axis.iter().any(|v| v == "none") {
        if a.axis.len() > 1 {
            return Err("--axis none reduces every axis: give no other --axis".into());
        }
        return Ok(Axes::All);
    }
    a.axis
        .iter()
        .map(|v| {
            v.parse::<isize>()
                .map_err(|_| format!("--axis {v}: expected an integer or `none`"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Axes::from)
}

/// logsumexp, softmax or log_softmax over `--axis` of an N-d array read where it lies (C or
/// Fortran order); the result in C order.
fn run_axes(
    a: &EvalArgs,
    func: RowFn,
    gpu: impl FnOnce() -> Result<Gpu, String>,
) -> Result<String, String> {
    let (x, fortran) = npy::read_f32_any_order(&a.input)?;
    let axes = axes_arg(a)?;
    let shape: Vec<usize> = x.shape.iter().map(|&d| d as usize).collect();
    let mut layout = NdLayout::contiguous(&shape);
    if fortran {
        let mut rev: Vec<usize> = shape.iter().rev().copied().collect();
        rev = logdomain::logsumexp::contiguous_strides(&rev);
        rev.reverse();
        layout.strides = rev;
    }
    let gpu = gpu()?;
    let start = Instant::now();
    let r = gpu
        .reduce_strided(func, &x.data, &layout, axes, a.keepdims)
        .map_err(lib)?;
    let elapsed = start.elapsed();
    let out_shape: Vec<u64> = r.shape.iter().map(|&d| d as u64).collect();
    npy::write_all(&[(&a.output, &out_shape, &r.values)])?;
    Ok(format!(
        "{}: {} ({}{}) -> {} ({} f32) in {:.1} ms on {}",
        op_name(a.op),
        a.input.display(),
        dims(&x.shape),
        if fortran { ", Fortran order" } else { "" },
        a.output.display(),
        dims(&out_shape),
        elapsed.as_secs_f64() * 1e3,
        gpu.info()
    ))
}

/// Reads and checks every file the op needs, then runs it on the GPU `gpu` makes; returns the
/// one-line summary. File errors come before the adapter is touched.
pub fn run(a: &EvalArgs, gpu: impl FnOnce() -> Result<Gpu, String>) -> Result<String, String> {
    let func = match a.op {
        EvalOp::Logsumexp => Some(RowFn::Logsumexp),
        EvalOp::Softmax => Some(RowFn::Softmax),
        EvalOp::LogSoftmax => Some(RowFn::LogSoftmax),
        _ => None,
    };
    if let Some(func) = func {
        return run_axes(a, func, gpu);
    }
    if !a.axis.is_empty() || a.keepdims {
        return Err(format!(
            "--axis and --keepdims are for logsumexp, softmax and log_softmax, not {}",
            op_name(a.op)
        ));
    }
    if matches!(
        a.op,
        EvalOp::LinearCrossEntropy | EvalOp::LinearCrossEntropyWithGrad
    ) {
        return run_linear(a, gpu);
    }
    if matches!(
        a.op,
        EvalOp::GmmScoreSamples | EvalOp::GmmLogResponsibilities
    ) {
        return run_gmm(a, gpu);
    }
    let x = npy::read_f32(&a.input)?;
    let reduction = Reduction::from(a.reduction);
    let reduced = |per: Vec<u64>| {
        if reduction == Reduction::None {
            per
        } else {
            vec![]
        }
    };
    let weight = match &a.weight {
        Some(p) => {
            let w = npy::read_f32(p)?;
            if w.shape.len() != 1 {
                return Err(format!(
                    "{}: expected a 1-D array of weights, got shape {:?}",
                    p.display(),
                    w.shape
                ));
            }
            Some(w.data)
        }
        None => None,
    };
    // The categorical losses' options (PyTorch's), with the class weights read above.
    let ce = |weight: Option<Vec<f32>>| CrossEntropy {
        weight,
        ignore_index: a.ignore_index,
        label_smoothing: a.label_smoothing,
        reduction,
    };
    let float_targets = || -> Result<Vec<f32>, String> {
        let p = need(&a.targets, "--targets", a.op)?;
        let t = npy::read_f32(p)?;
        if t.shape != x.shape {
            return Err(format!(
                "{}: targets shape {:?} does not match the input's {:?}",
                p.display(),
                t.shape,
                x.shape
            ));
        }
        Ok(t.data)
    };
    let matrix = || x.matrix(&a.input);
    let extra = match a.op {
        EvalOp::LogProd | EvalOp::Logsumexp | EvalOp::Softmax | EvalOp::LogSoftmax => {
            matrix()?;
            Extra::None
        }
        EvalOp::LogsumexpBackward | EvalOp::LogSoftmaxBackward | EvalOp::SoftmaxBackward => {
            let (r, _) = matrix()?;
            let gp = need(&a.grad, "--grad", a.op)?;
            let g = npy::read_f32(gp)?;
            let per_row = a.op == EvalOp::LogsumexpBackward;
            let want = if per_row {
                vec![r as u64]
            } else {
                x.shape.clone()
            };
            if g.shape != want {
                return Err(format!(
                    "{}: grad shape {:?}; expected {want:?}",
                    gp.display(),
                    g.shape
                ));
            }
            let lse = if per_row {
                let lp = need(&a.lse, "--lse", a.op)?;
                let l = npy::read_f32(lp)?;
                if l.shape != [r as u64] {
                    return Err(format!(
                        "{}: lse shape {:?}; expected ({r},)",
                        lp.display(),
                        l.shape
                    ));
                }
                l.data
            } else {
                Vec::new()
            };
            Extra::Backward(g.data, lse)
        }
        EvalOp::CrossEntropy | EvalOp::NllLoss | EvalOp::CrossEntropyWithGrad => {
            let p = need(&a.targets, "--targets", a.op)?;
            let targets = if a.op == EvalOp::CrossEntropy {
                npy::read_categorical(p)?
            } else {
                npy::Targets::Classes(npy::read_targets(p)?)
            };
            match targets {
                npy::Targets::Probabilities(t) => {
                    if x.shape.is_empty() || t.shape != x.shape {
                        return Err(format!(
                            "{}: targets of shape {}: class probabilities (float32) need the \
                             input's shape {}, integer class indices the shape {}",
                            p.display(),
                            tuple(&t.shape),
                            tuple(&x.shape),
                            tuple(&sample_shape(&x.shape))
                        ));
                    }
                    Extra::Probabilities(t.data)
                }
                npy::Targets::Classes(t) => {
                    // PyTorch's (C,), (N, C) or (N, C, d1, …, dk): targets without axis 1
                    // (the fused gradient takes (N, C) only).
                    if x.shape.len() == 2 || a.op == EvalOp::CrossEntropyWithGrad {
                        matrix()?;
                    } else if x.shape.is_empty() {
                        return Err(format!(
                            "{}: a 0-d input has no class axis",
                            a.input.display()
                        ));
                    }
                    let want = sample_shape(&x.shape);
                    if t.shape != want {
                        return Err(format!(
                            "{}: targets shape {}; expected {} (the input's {} without the \
                             class axis)",
                            p.display(),
                            tuple(&t.shape),
                            tuple(&want),
                            tuple(&x.shape)
                        ));
                    }
                    Extra::Classes(t.data)
                }
            }
        }
        EvalOp::GaussianNll | EvalOp::GaussianNllWithGrad => {
            let y = float_targets()?;
            let vp = need(&a.var, "--var", a.op)?;
            let var = npy::read_f32(vp)?;
            if var.data.len() != 1 && var.shape != x.shape {
                return Err(format!(
                    "{}: var shape {:?} is neither the input's {:?} nor a single value",
                    vp.display(),
                    var.shape,
                    x.shape
                ));
            }
            Extra::Gaussian(y, var.data)
        }
        EvalOp::BinaryCrossEntropyWithLogits
        | EvalOp::PoissonNll
        | EvalOp::BinaryCrossEntropyWithLogitsWithGrad
        | EvalOp::PoissonNllWithGrad => {
            if x.shape.is_empty() || x.shape.len() > 2 {
                return Err(format!(
                    "{}: expected a 1-D or 2-D array, got shape {:?}",
                    a.input.display(),
                    x.shape
                ));
            }
            Extra::Values(float_targets()?)
        }
        EvalOp::LinearCrossEntropy
        | EvalOp::LinearCrossEntropyWithGrad
        | EvalOp::GmmScoreSamples
        | EvalOp::GmmLogResponsibilities => {
            return Err(format!("{} is evaluated apart", op_name(a.op)));
        }
    };
    let with_grad = matches!(
        a.op,
        EvalOp::CrossEntropyWithGrad
            | EvalOp::GaussianNllWithGrad
            | EvalOp::BinaryCrossEntropyWithLogitsWithGrad
            | EvalOp::PoissonNllWithGrad
    );
    let grad_out = if with_grad {
        Some(need(&a.grad_output, "--grad-output", a.op)?)
    } else {
        None
    };
    let var_grad_out = if a.op == EvalOp::GaussianNllWithGrad {
        Some(need(&a.var_grad_output, "--var-grad-output", a.op)?)
    } else {
        None
    };
    // Gradients: (values, shape, where) written with the main output.
    let mut grads: Vec<(Vec<f32>, Vec<u64>, &Path)> = Vec::new();
    let extras = a.z_loss != 0.0 || a.softcap.is_some();
    if extras
        && !(matches!(a.op, EvalOp::CrossEntropy | EvalOp::CrossEntropyWithGrad)
            && x.shape.len() == 2
            && matches!(extra, Extra::Classes(_)))
    {
        return Err(format!(
            "--z-loss and --softcap apply to cross_entropy[_with_grad] of (N, C) logits with \
             class-index targets and to linear_cross_entropy; not to {} of a {} input",
            op_name(a.op),
            tuple(&x.shape)
        ));
    }
    let gpu = gpu()?;
    let start = Instant::now();
    let (out, shape): (Vec<f32>, Vec<u64>) = match (a.op, extra) {
        (EvalOp::LogsumexpBackward, Extra::Backward(g, lse)) => {
            let (r, c) = matrix()?;
            let v = gpu
                .logsumexp_backward(&x.data, &lse, &g, r, c)
                .map_err(lib)?;
            (v, x.shape.clone())
        }
        (EvalOp::LogSoftmaxBackward | EvalOp::SoftmaxBackward, Extra::Backward(g, _)) => {
            let (r, c) = matrix()?;
            let v = if a.op == EvalOp::LogSoftmaxBackward {
                gpu.log_softmax_backward(&x.data, &g, r, c)
            } else {
                gpu.softmax_backward(&x.data, &g, r, c)
            };
            (v.map_err(lib)?, x.shape.clone())
        }
        (EvalOp::CrossEntropy, Extra::Probabilities(t)) => {
            let o = ce(weight);
            let shape: Vec<usize> = x.shape.iter().map(|&d| d as usize).collect();
            let r = gpu
                .cross_entropy_probs(&x.data, &shape, &t, &o)
                .map_err(lib)?;
            (r.values, r.shape.iter().map(|&d| d as u64).collect())
        }
        (EvalOp::CrossEntropy | EvalOp::NllLoss, Extra::Classes(t)) if x.shape.len() != 2 => {
            let o = ce(weight);
            let shape: Vec<usize> = x.shape.iter().map(|&d| d as usize).collect();
            let r = if a.op == EvalOp::CrossEntropy {
                gpu.cross_entropy_nd(&x.data, &shape, &t, &o)
            } else {
                gpu.nll_loss_nd(&x.data, &shape, &t, &o)
            }
            .map_err(lib)?;
            (r.values, r.shape.iter().map(|&d| d as u64).collect())
        }
        (
            EvalOp::CrossEntropy | EvalOp::NllLoss | EvalOp::CrossEntropyWithGrad,
            Extra::Classes(t),
        ) => {
            let (r, c) = matrix()?;
            let o = ce(weight);
            let lo = LinearCrossEntropy {
                ce: o.clone(),
                z_loss: a.z_loss,
                softcap: a.softcap,
                grad_filter: false,
            };
            let v = match a.op {
                EvalOp::CrossEntropy if extras => gpu.logit_cross_entropy(&x.data, r, c, &t, &lo),
                EvalOp::CrossEntropyWithGrad if extras => {
                    let g = gpu
                        .logit_cross_entropy_with_grad(&x.data, r, c, &t, &lo)
                        .map_err(lib)?;
                    grads.extend(grad_out.map(|p| (g.d_logits, x.shape.clone(), p)));
                    Ok(g.loss)
                }
                EvalOp::CrossEntropy => gpu.cross_entropy(&x.data, r, c, &t, &o),
                EvalOp::NllLoss => gpu.nll_loss(&x.data, r, c, &t, &o),
                _ => {
                    let (loss, g) = gpu
                        .cross_entropy_with_grad(&x.data, r, c, &t, &o)
                        .map_err(lib)?;
                    grads.extend(grad_out.map(|p| (g, x.shape.clone(), p)));
                    Ok(loss)
                }
            };
            (v.map_err(lib)?, reduced(vec![r as u64]))
        }
        (EvalOp::GaussianNll, Extra::Gaussian(y, var)) => {
            let o = GaussianNll {
                full: a.full,
                eps: a.eps.unwrap_or(1e-6),
                reduction,
            };
            let v = if a.op == EvalOp::GaussianNll {
                gpu.gaussian_nll(&x.data, &y, &var, &o).map_err(lib)?
            } else {
                let (loss, dx, dv) = gpu
                    .gaussian_nll_with_grad(&x.data, &y, &var, &o)
                    .map_err(lib)?;
                let var_shape = if var.len() == x.data.len() {
                    x.shape.clone()
                } else {
                    vec![1]
                };
                grads.extend(grad_out.map(|p| (dx, x.shape.clone(), p)));
                grads.extend(var_grad_out.map(|p| (dv, var_shape, p)));
                loss
            };
            (v, reduced(x.shape.clone()))
        }
        (
            EvalOp::BinaryCrossEntropyWithLogits | EvalOp::BinaryCrossEntropyWithLogitsWithGrad,
            Extra::Values(y),
        ) => {
            let (r, c) = match x.shape[..] {
                [r, c] => (r as usize, c as usize),
                _ => (1, x.data.len()),
            };
            let o = Bce {
                pos_weight: weight,
                reduction,
            };
            let v = if with_grad {
                let (loss, g) = gpu
                    .binary_cross_entropy_with_logits_with_grad(&x.data, &y, r, c, &o)
                    .map_err(lib)?;
                grads.extend(grad_out.map(|p| (g, x.shape.clone(), p)));
                loss
            } else {
                gpu.binary_cross_entropy_with_logits(&x.data, &y, r, c, &o)
                    .map_err(lib)?
            };
            (v, reduced(x.shape.clone()))
        }
        (EvalOp::PoissonNll | EvalOp::PoissonNllWithGrad, Extra::Values(y)) => {
            let o = PoissonNll {
                log_input: !a.rates,
                full: a.full,
                eps: a.eps.unwrap_or(1e-8),
                reduction,
            };
            let v = if with_grad {
                let (loss, g) = gpu.poisson_nll_with_grad(&x.data, &y, &o).map_err(lib)?;
                grads.extend(grad_out.map(|p| (g, x.shape.clone(), p)));
                loss
            } else {
                gpu.poisson_nll(&x.data, &y, &o).map_err(lib)?
            };
            (v, reduced(x.shape.clone()))
        }
        (op, _) => {
            let (r, c) = matrix()?;
            debug_assert_eq!(op, EvalOp::LogProd);
            (gpu.log_prod(&x.data, r, c).map_err(lib)?, vec![r as u64])
        }
    };
    let elapsed = start.elapsed();
    let mut files: Vec<(&Path, &[u64], &[f32])> = vec![(&a.output, &shape, &out)];
    for (g, gs, p) in &grads {
        files.push((p, gs, g));
    }
    npy::write_all(&files)?;
    let also: String = grads
        .iter()
        .map(|(_, gs, p)| format!(", gradient -> {} ({} f32)", p.display(), dims(gs)))
        .collect();
    Ok(summary(a, &x.shape, &shape, &also, elapsed, &gpu))
}
