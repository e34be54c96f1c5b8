//! `logdomain stability`: why the kernels are written as they are. Log-sum-exp and softmax by
//! the naive formula, the max-shifted one, and the crate's (max-shifted with log1p, accurate
//! exp, special values from bits), all on the GPU, against an f64 reference from the same f32
//! inputs, across input families; a table, a CSV and an SVG plot.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use logdomain::stability::Textbook;
use logdomain::{Gpu, RowFn};

use super::Gen;

/// Arguments of `stability`.
#[derive(Args, Debug)]
#[command(after_help = "Example:
  logdomain stability --out study    # writes study/stability.csv and study/stability.svg")]
pub struct StabilityArgs {
    /// Directory for stability.csv and stability.svg (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Smaller inputs (rows of at most 10,000 entries, fewer rows): a quick check.
    #[arg(long)]
    pub quick: bool,
}

/// The methods compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Naive,
    MaxShifted,
    Crate,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Naive => "naive",
            Method::MaxShifted => "max-shifted",
            Method::Crate => "logdomain (max-shifted + log1p)",
        }
    }
}

const METHODS: [Method; 3] = [Method::Naive, Method::MaxShifted, Method::Crate];

/// One family member: its inputs.
struct Case {
    family: &'static str,
    /// The family's parameter (r, the row length, …), the plot's x.
    param: f64,
    rows: usize,
    cols: usize,
    x: Vec<f32>,
}

/// Errors of one method on one case and function.
pub struct Stats {
    pub max_ulp: f64,
    pub median_ulp: f64,
    /// Results that are NaN or ±inf where the truth is finite (or that differ from a
    /// non-finite truth), as a share of all results.
    pub nonfinite: f64,
}

fn cases(quick: bool) -> Vec<Case> {
    let mut rng = Gen(0x0dd_ba11_cafe_f00d);
    let rows = if quick { 16 } else { 128 };
    let cols = 1000;
    let mut out = Vec::new();
    for r in [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4] {
        let x = (0..rows * cols).map(|_| rng.uniform(-r, r)).collect();
        out.push(Case {
            family: "uniform on [-r, r]",
            param: f64::from(r),
            rows,
            cols,
            x,
        });
    }
    let mut x = vec![-40f32; rows * cols];
    for row in x.chunks_mut(cols) {
        row[0] = 0.0;
    }
    out.push(Case {
        family: "one dominant entry [0, -40, ...]",
        param: 40.0,
        rows,
        cols,
        x,
    });
    let x = (0..rows * cols)
        .map(|_| 1e4 + rng.uniform(-1.0, 1.0))
        .collect();
    out.push(Case {
        family: "offset 1e4 + noise in [-1, 1]",
        param: 1e4,
        rows,
        cols,
        x,
    });
    let lengths: &[usize] = if quick {
        &[10, 100, 1000, 10_000]
    } else {
        &[10, 100, 1000, 10_000, 100_000, 1_000_000]
    };
    for &len in lengths {
        let rows = (2_000_000 / len).clamp(2, rows);
        let x = (0..rows * len).map(|_| rng.uniform(-10.0, 10.0)).collect();
        out.push(Case {
            family: "row length n, uniform on [-10, 10]",
            param: len as f64,
            rows,
            cols: len,
            x,
        });
    }
    let mut x: Vec<f32> = (0..rows * cols)
        .map(|_| {
            let v = rng.uniform(-10.0, 10.0);
            if rng.uniform(0.0, 1.0) < 0.5 {
                f32::NEG_INFINITY
            } else {
                v
            }
        })
        .collect();
    x[..cols].fill(f32::NEG_INFINITY); // a fully masked row
    out.push(Case {
        family: "-inf masks (half the entries, one row all)",
        param: 0.5,
        rows,
        cols,
        x,
    });
    out
}

/// The f64 truth: per row log-sum-exp, per entry softmax (SciPy's semantics: −inf for a fully
/// masked row, NaN softmax there). The sum leaves the max out and goes through `ln_1p`: a plain
/// f64 sum would lose `[0, −40, …]`'s 999·e⁻⁴⁰ against the 1 just as f32 does.
fn truth(x: &[f32], cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut lse = Vec::new();
    let mut sm = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let (arg, m) = row.iter().map(|&v| f64::from(v)).enumerate().fold(
            (0, f64::NEG_INFINITY),
            |(i, m), (j, v)| if v > m { (j, v) } else { (i, m) },
        );
        let l = if m == f64::NEG_INFINITY {
            m
        } else {
            let others: f64 = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != arg)
                .map(|(_, &v)| (f64::from(v) - m).exp())
                .sum();
            m + others.ln_1p()
        };
        lse.push(l);
        sm.extend(row.iter().map(|&v| {
            if l == f64::NEG_INFINITY {
                f64::NAN
            } else {
                (f64::from(v) - l).exp()
            }
        }));
    }
    (lse, sm)
}

/// The spacing of f32 at |t| (the smallest subnormal at 0).
fn ulp(t: f64) -> f64 {
    let a = (t.abs() as f32).max(f32::from_bits(1));
    let next = f32::from_bits(a.to_bits() + 1);
    f64::from(next - a)
}

/// Errors in ULPs of the truth. Truths below f32's normal range (|t| < 2⁻¹²⁶, which GPUs may
/// flush to zero) are not scored in ULPs, only for NaN/inf.
fn stats(got: &[f32], want: &[f64]) -> Stats {
    let mut errs = Vec::with_capacity(got.len());
    let mut bad = 0usize;
    let normal = f64::from(f32::MIN_POSITIVE);
    for (&g, &w) in got.iter().zip(want) {
        let g = f64::from(g);
        if w.is_finite() {
            if !g.is_finite() {
                bad += 1;
            } else if w == 0.0 || w.abs() >= normal {
                errs.push((g - w).abs() / ulp(w));
            }
        } else if !(g == w || (g.is_nan() && w.is_nan())) {
            bad += 1;
        }
    }
    errs.sort_by(f64::total_cmp);
    Stats {
        max_ulp: errs.last().copied().unwrap_or(f64::NAN),
        median_ulp: errs.get(errs.len() / 2).copied().unwrap_or(f64::NAN),
        nonfinite: bad as f64 / got.len().max(1) as f64,
    }
}

fn evaluate(gpu: &Gpu, method: Method, func: RowFn, c: &Case) -> Result<Vec<f32>, String> {
    let r = match (method, func) {
        (Method::Naive, _) => gpu.textbook(Textbook::Naive, func, &c.x, c.rows, c.cols),
        (Method::MaxShifted, _) => gpu.textbook(Textbook::MaxShifted, func, &c.x, c.rows, c.cols),
        (Method::Crate, RowFn::Logsumexp) => gpu.logsumexp(&c.x, c.rows, c.cols),
        (Method::Crate, _) => gpu.softmax(&c.x, c.rows, c.cols),
    };
    r.map_err(|e| e.to_string())
}

/// One line of the study.
pub struct Line {
    pub func: &'static str,
    pub family: &'static str,
    pub param: f64,
    pub rows: usize,
    pub cols: usize,
    pub method: Method,
    pub stats: Stats,
}

/// Runs the study; `progress` is told after each case.
pub fn study(
    gpu: &Gpu,
    quick: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Line>, String> {
    let all = cases(quick);
    let mut lines = Vec::new();
    for (i, c) in all.iter().enumerate() {
        let (lse, sm) = truth(&c.x, c.cols);
        for (func, name, want) in [
            (RowFn::Logsumexp, "logsumexp", &lse),
            (RowFn::Softmax, "softmax", &sm),
        ] {
            for method in METHODS {
                let got = evaluate(gpu, method, func, c)?;
                lines.push(Line {
                    func: name,
                    family: c.family,
                    param: c.param,
                    rows: c.rows,
                    cols: c.cols,
                    method,
                    stats: stats(&got, want),
                });
            }
        }
        progress(i + 1, all.len());
    }
    Ok(lines)
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v < 1e4 {
        format!("{v:.1}")
    } else {
        format!("{v:.1e}")
    }
}

/// The terminal table.
pub fn table(lines: &[Line]) -> String {
    let mut s = format!(
        "{:<9} {:<44} {:>9} {:<32} {:>10} {:>10} {:>8}\n",
        "function", "input family", "param", "method", "max ULP", "median", "NaN/inf"
    );
    for l in lines {
        let _ = writeln!(
            s,
            "{:<9} {:<44} {:>9} {:<32} {:>10} {:>10} {:>7.1}%",
            l.func,
            l.family,
            num(l.param),
            l.method.name(),
            num(l.stats.max_ulp),
            num(l.stats.median_ulp),
            100.0 * l.stats.nonfinite
        );
    }
    s
}

/// The CSV.
pub fn csv(lines: &[Line]) -> String {
    let mut s =
        String::from("function,family,param,rows,cols,method,max_ulp,median_ulp,nonfinite_share\n");
    for l in lines {
        let _ = writeln!(
            s,
            "{},\"{}\",{},{},{},{},{},{},{}",
            l.func,
            l.family,
            l.param,
            l.rows,
            l.cols,
            l.method.name(),
            l.stats.max_ulp,
            l.stats.median_ulp,
            l.stats.nonfinite
        );
    }
    s
}

/// Where a NaN or infinite result is drawn (above every finite error).
pub const PLOT_CAP: f64 = 1e12;

/// The SVG plot: max error against the dynamic range r, one line per method, log-sum-exp and
/// softmax side by side.
pub fn plot(lines: &[Line], path: &std::path::Path, adapter: &str) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(
            &format!("max error vs f64 on {adapter}; NaN/inf drawn at 1e12"),
            ("sans-serif", 16),
        )
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(550);
    let colors = [RED, BLUE, RGBColor(0, 150, 0)];
    for (area, func) in [(left, "logsumexp"), (right, "softmax")] {
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("{func}, rows uniform on [-r, r]"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (0.8f64..1.3e4f64).log_scale(),
                (0.1f64..1e13f64).log_scale(),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("r (dynamic range of a row)")
            .y_desc("max error (ULP)")
            .x_label_formatter(&|v| format!("{v}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, method) in METHODS.iter().enumerate() {
            let color = colors[i].to_rgba();
            let points: Vec<(f64, f64)> = lines
                .iter()
                .filter(|l| {
                    l.func == func && l.method == *method && l.family.starts_with("uniform")
                })
                .map(|l| {
                    let y = if l.stats.nonfinite > 0.0 || l.stats.max_ulp.is_nan() {
                        PLOT_CAP
                    } else {
                        l.stats.max_ulp.max(0.1)
                    };
                    (l.param, y)
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(method.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
