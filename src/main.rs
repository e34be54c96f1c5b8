//! The `logdomain` command: a demo of the main job (no arguments, i.e. `cargo run --release`),
//! `eval` to run any op on `.npy` files, `fit` to fit a Gaussian mixture by EM, `bench` to time the kernels against the CPU reference,
//! and `stability` to show why the kernels are written as they are. Exit codes: 0 ok, 1 runtime
//! failure, 2 usage.

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use logdomain::Gpu;

use cli::bench::{BenchArgs, BenchOp, Shape};
use cli::demo::DemoArgs;
use cli::eval::EvalArgs;
use cli::fit::FitArgs;
use cli::stability::StabilityArgs;

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "lower")]
enum Backend {
    Vulkan,
    Gl,
    Metal,
    Dx12,
}

/// Log-domain mathematics on any GPU (or a software adapter): log-sum-exp, softmax,
/// log-likelihoods and their gradients as WGSL kernels, checked against a CPU reference.
#[derive(Parser, Debug)]
#[command(
    name = "logdomain",
    version,
    after_help = "Examples:
  logdomain                                   # the demo: GMM log-likelihood of 10^6 points, cross-entropy
  logdomain eval log_softmax --input x.npy --output y.npy
  logdomain fit --input x.npy --components 16 --covariance diag --output params.json
  logdomain --backend gl bench --op logsumexp --shape 4096x4096 --f16"
)]
struct Cli {
    /// The wgpu backend (as WGPU_BACKEND).
    #[arg(long, global = true, value_enum)]
    backend: Option<Backend>,
    /// A substring of the adapter's name (as WGPU_ADAPTER_NAME).
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The main job on generated data, checked against the CPU reference (the default).
    Demo(DemoArgs),
    /// Run one op on .npy files and write the result as .npy.
    Eval(Box<EvalArgs>),
    /// Time ops on the GPU (kernel, end to end) and the CPU reference.
    Bench(BenchArgs),
    /// Fit a Gaussian mixture to the points of a .npy file by EM (as scikit-learn's
    /// GaussianMixture) and write its parameters as JSON.
    Fit(FitArgs),
    /// Compare naive, max-shifted and logdomain's log-sum-exp and softmax against f64: a
    /// table, a CSV and an SVG plot.
    Stability(StabilityArgs),
}

fn gpu() -> Result<Gpu, String> {
    Gpu::new().map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command.unwrap_or(Command::Demo(DemoArgs::default())) {
        Command::Demo(a) => cli::demo::run(&gpu()?, &a),
        Command::Eval(a) => {
            let summary = cli::eval::run(&a, gpu)?;
            println!("{summary}");
            Ok(())
        }
        Command::Fit(a) => {
            let summary = cli::fit::run(&a, gpu)?;
            println!("{summary}");
            Ok(())
        }
        Command::Stability(a) => {
            let gpu = gpu()?;
            std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
            eprintln!("adapter: {}", gpu.info());
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} input families")
                    .map_err(|e| e.to_string())?,
            );
            let lines = cli::stability::study(&gpu, a.quick, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            println!("adapter: {}", gpu.info());
            print!("{}", cli::stability::table(&lines));
            let csv = a.out.join("stability.csv");
            std::fs::write(&csv, cli::stability::csv(&lines))
                .map_err(|e| format!("{}: {e}", csv.display()))?;
            let svg = a.out.join("stability.svg");
            let adapter = format!("{} via {:?}", gpu.info().name, gpu.info().backend);
            cli::stability::plot(&lines, &svg, &adapter)?;
            println!("wrote {} and {}", csv.display(), svg.display());
            Ok(())
        }
        Command::Bench(a) => {
            let gpu = gpu()?;
            let ops = if a.ops.is_empty() {
                vec![
                    BenchOp::Logsumexp,
                    BenchOp::LogSoftmax,
                    BenchOp::CrossEntropy,
                ]
            } else {
                a.ops.clone()
            };
            let shapes = if a.shapes.is_empty() {
                vec![
                    Shape {
                        rows: 4096,
                        cols: 4096,
                    },
                    Shape {
                        rows: 65_536,
                        cols: 256,
                    },
                ]
            } else {
                a.shapes.clone()
            };
            eprintln!("adapter: {}", gpu.info());
            let bar = ProgressBar::new((ops.len() * shapes.len()) as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                    .map_err(|e| e.to_string())?,
            );
            let mut rows = Vec::new();
            for &op in &ops {
                for &shape in &shapes {
                    bar.set_message(format!("{op:?} {}x{}", shape.rows, shape.cols));
                    let precision = cli::bench::Precision {
                        f16_in: a.f16,
                        f16_out: a.f16_out,
                    };
                    rows.push(cli::bench::measure(&gpu, op, shape, a.runs, precision)?);
                    bar.inc(1);
                }
            }
            bar.finish_and_clear();
            if a.json {
                println!("{}", cli::bench::json(&gpu, &rows));
            } else {
                println!("adapter: {}", gpu.info());
                print!("{}", cli::bench::table(&rows));
                println!(
                    "(ts) GPU time from timestamp queries; (wall) wall clock with data resident"
                );
            }
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    // Adapter selection reads these; set before any thread or wgpu object exists.
    if let Some(b) = cli.backend {
        let name = format!("{b:?}").to_lowercase();
        // SAFETY: single-threaded here, before wgpu starts.
        unsafe { std::env::set_var("WGPU_BACKEND", name) };
    }
    if let Some(a) = &cli.adapter {
        // SAFETY: as above.
        unsafe { std::env::set_var("WGPU_ADAPTER_NAME", a) };
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
