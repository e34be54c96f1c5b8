//! `logdomain` with no arguments: the main job on data generated on the spot — a Gaussian
//! mixture's log-likelihood of 10⁶ points and the cross-entropy (with its gradient) of a large
//! logits batch, on the GPU, checked against the CPU reference, with times.

use std::time::{Duration, Instant};

use super::{Gen, output, storage};
use clap::Args;
use logdomain::reference::{gmm as cpu_gmm, gradients as cpu_grad, likelihood as cpu_ll};
use logdomain::{Covariance, CrossEntropy, CrossEntropyGradOp, Gmm, GmmOp, GmmOutput, Gpu, LossOp};

/// Arguments of `demo` (the default command).
#[derive(Args, Debug)]
#[command(after_help = "Example:
  logdomain demo --points 100000 --rows 4096 --classes 1000")]
pub struct DemoArgs {
    /// Points of the mixture (16 dimensions, 16 diagonal components).
    #[arg(long, default_value_t = 1_000_000)]
    pub points: usize,
    /// Rows of the logits batch.
    #[arg(long, default_value_t = 16_384)]
    pub rows: usize,
    /// Classes of the logits batch.
    #[arg(long, default_value_t = 4096)]
    pub classes: usize,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            points: 1_000_000,
            rows: 16_384,
            classes: 4096,
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn lib(e: logdomain::Error) -> String {
    e.to_string()
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

/// The second of two calls: the first builds pipelines and the reused buffers.
fn warm<T>(mut f: impl FnMut() -> T) -> (T, Duration) {
    drop(f());
    timed(f)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max)
}

/// The median GPU time of a few runs from timestamps, or "n/a" where the adapter has none.
fn kernel(mut f: impl FnMut() -> Result<Option<Duration>, String>) -> Result<String, String> {
    let mut v = Vec::new();
    for _ in 0..3 {
        v.extend(f()?);
    }
    v.sort();
    Ok(v.get(v.len() / 2).map_or("n/a".into(), |d| ms(*d)))
}

pub fn run(gpu: &Gpu, a: &DemoArgs) -> Result<(), String> {
    println!(
        "logdomain {}: the main job on data generated here",
        env!("CARGO_PKG_VERSION")
    );
    println!("adapter: {}\n", gpu.info());
    let mut rng = Gen(0x2545_f491_4f6c_dd1d);
    println!(
        "{:<44} {:>12} {:>15} {:>14} {:>22}",
        "job", "GPU kernel", "GPU end-to-end", "CPU reference", "agreement with CPU"
    );

    // A mixture of 16 diagonal Gaussians in 16 dimensions; points drawn around its means.
    let (n, d, k) = (a.points, 16usize, 16usize);
    let means = rng.vec(k * d, -5.0, 5.0);
    let gmm = Gmm {
        weights: vec![1.0 / k as f32; k],
        means: means.clone(),
        covariance: Covariance::Diag(rng.vec(k * d, 0.5, 2.0)),
    };
    let mut points = rng.vec(n * d, -1.5, 1.5);
    for (i, p) in points.iter_mut().enumerate() {
        *p += means[((i / d) % k) * d + i % d];
    }
    let op = GmmOp::new(gpu, n, d, &gmm, GmmOutput::ScoreSamples).map_err(lib)?;
    let (pb, out) = (storage(gpu, bytemuck::cast_slice(&points)), output(gpu, n));
    let k_time = kernel(|| op.kernel_time(gpu, &pb, &out).map_err(lib))?;
    let (got, gpu_time) = warm(|| gpu.gmm_score_samples(&points, n, d, &gmm));
    let got = got.map_err(lib)?;
    let (want, cpu_time) = timed(|| cpu_gmm::score_samples(&points, n, d, &gmm));
    let total = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
    println!(
        "{:<44} {:>12} {:>15} {:>14} {:>22}",
        format!("GMM log p(x): {n} points, k = {k}, d = {d}"),
        k_time,
        ms(gpu_time),
        ms(cpu_time),
        format!("max |Δ| {:.1e}", max_abs_diff(&got, &want))
    );
    println!(
        "    total log-likelihood: GPU {:.6e}, CPU {:.6e}",
        total(&got),
        total(&want)
    );

    // Cross-entropy of a logits batch, mean over rows, and its gradient.
    let (rows, classes) = (a.rows, a.classes);
    let logits = rng.vec(rows * classes, -10.0, 10.0);
    let targets: Vec<i64> = (0..rows).map(|r| (r * 7919 % classes) as i64).collect();
    let t32: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
    let o = CrossEntropy::default();
    let op = LossOp::cross_entropy(gpu, rows, classes, &o).map_err(lib)?;
    let (xb, tb, lb) = (
        storage(gpu, bytemuck::cast_slice(&logits)),
        storage(gpu, bytemuck::cast_slice(&t32)),
        output(gpu, 1),
    );
    let k_time = kernel(|| op.kernel_time(gpu, &[&xb, &tb], &lb).map_err(lib))?;
    let (got, gpu_time) = warm(|| gpu.cross_entropy(&logits, rows, classes, &targets, &o));
    let got = got.map_err(lib)?;
    let (want, cpu_time) =
        timed(|| cpu_ll::categorical(&logits, rows, classes, &targets, &o, false));
    println!(
        "{:<44} {:>12} {:>15} {:>14} {:>22}",
        format!("cross-entropy: {rows} × {classes} logits"),
        k_time,
        ms(gpu_time),
        ms(cpu_time),
        format!("|Δ| {:.1e}", max_abs_diff(&got, &want))
    );
    // The fused forward and backward: its kernel time, then the blocking call (upload, run,
    // read back the rows × classes gradient).
    let fused_op = CrossEntropyGradOp::new(gpu, rows, classes, &o).map_err(lib)?;
    let gb = output(gpu, rows * classes);
    let k_time = kernel(|| {
        fused_op
            .kernel_time(gpu, &xb, &tb, &lb, Some(&gb))
            .map_err(lib)
    })?;
    drop(gb);
    let (fused, gpu_time) =
        warm(|| gpu.cross_entropy_with_grad(&logits, rows, classes, &targets, &o));
    let (loss, grad) = fused.map_err(lib)?;
    let ((cpu_loss, cpu_g), cpu_time) =
        timed(|| cpu_grad::cross_entropy_with_grad(&logits, rows, classes, &targets, &o));
    println!(
        "{:<44} {:>12} {:>15} {:>14} {:>22}",
        "  with its gradient (fused, 2 reads)",
        k_time,
        ms(gpu_time),
        ms(cpu_time),
        format!(
            "max |Δ| {:.1e}",
            max_abs_diff(&grad, &cpu_g).max(max_abs_diff(&loss, &cpu_loss))
        )
    );
    println!("    mean loss: GPU {:.7}, CPU {:.7}", got[0], want[0]);

    let tiny = gpu.logsumexp(&[0.0, -40.0], 1, 2).map_err(lib)?[0];
    println!(
        "\nlogsumexp([0, -40]) = {tiny:e} (log1p precision, as SciPy >= 1.15; the naive formula gives 0)"
    );
    let big = gpu.logsumexp(&[3e38, 3e38], 1, 2).map_err(lib)?[0];
    println!("logsumexp([3e38, 3e38]) = {big:e} (no overflow)");
    Ok(())
}
