//! `logdomain bench`: GPU kernel, end-to-end and CPU reference times per op and shape.

use std::time::{Duration, Instant};

use super::{Gen, output, storage};
use clap::{Args, ValueEnum};
use logdomain::reference::{
    bandwidth as cpu_read, gmm as cpu_gmm, likelihood as cpu_ll, logsumexp as cpu_lse,
};
use logdomain::{
    Bce, Covariance, CrossEntropy, GaussianNll, Gmm, GmmOp, GmmOutput, Gpu, InputFormat, LossOp,
    OutputFormat, PoissonNll, ReadProbe, RowFn, RowOp, RowsLayout, Strategy,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum BenchOp {
    Logsumexp,
    Softmax,
    LogSoftmax,
    CrossEntropy,
    GaussianNll,
    BinaryCrossEntropyWithLogits,
    PoissonNll,
    LogProd,
    /// n × dims points, 16 diagonal components.
    GmmScoreSamples,
    /// The yardstick: a plain read of ROWS × COLS words, reduced per invocation (GPU), and a
    /// plain sum of the same words on one CPU core.
    Read,
    /// The copy yardstick: each of ROWS × COLS words read and written once (GPU), and one CPU
    /// core copying the same words.
    Copy,
    /// The read with 16-byte words, each invocation loading 4 before it adds any (COLS a
    /// multiple of 4).
    ReadVec4,
    /// The copy with 16-byte words (COLS a multiple of 4).
    CopyVec4,
}

/// `ROWSxCOLS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub rows: usize,
    pub cols: usize,
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        let (r, c) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("{s:?}: expected ROWSxCOLS, e.g. 4096x4096"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{s:?}: {v:?} is not a positive integer"))
        };
        Ok(Shape {
            rows: parse(r)?,
            cols: parse(c)?,
        })
    }
}

/// Arguments of `bench`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  logdomain bench
  logdomain bench --op log_softmax --op cross_entropy --shape 4096x4096 --shape 65536x256
  logdomain --backend gl bench --op logsumexp --shape 1000000x16 --json")]
pub struct BenchArgs {
    /// Ops to time (repeatable; default: logsumexp, log_softmax, cross_entropy).
    #[arg(long = "op", value_enum)]
    pub ops: Vec<BenchOp>,
    /// Shapes ROWSxCOLS (repeatable; default: 4096x4096 and 65536x256). For gmm_score_samples,
    /// points × dims.
    #[arg(long = "shape")]
    pub shapes: Vec<Shape>,
    /// Timed runs per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Feed logsumexp, softmax, log_softmax, cross_entropy and gmm_score_samples f16 inputs
    /// (half the bytes; the other ops ignore it).
    #[arg(long)]
    pub f16: bool,
    /// softmax and log_softmax write f16 outputs (f32 inputs; the other ops ignore it).
    #[arg(long, conflicts_with = "f16")]
    pub f16_out: bool,
}

/// What the benched ops read and write: f16 inputs, f16 outputs (softmax and log_softmax).
#[derive(Clone, Copy, Debug, Default)]
pub struct Precision {
    pub f16_in: bool,
    pub f16_out: bool,
}

/// One measured op and shape.
pub struct Row {
    pub op: String,
    pub shape: Shape,
    /// GPU time with data resident, and how it was taken ("timestamps" or "wall").
    pub gpu: Duration,
    pub gpu_clock: &'static str,
    pub end_to_end: Duration,
    pub cpu: Duration,
    /// Bytes the op must read (for the copy yardstick: read and written).
    pub bytes: u64,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    f()?;
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed());
    }
    Ok(median(v))
}

fn lib(e: logdomain::Error) -> String {
    e.to_string()
}

/// Measures one op at one shape.
pub fn measure(
    gpu: &Gpu,
    op: BenchOp,
    shape: Shape,
    runs: usize,
    precision: Precision,
) -> Result<Row, String> {
    let (f16, f16_out) = (precision.f16_in, precision.f16_out);
    let runs = runs.max(1);
    let (rows, cols) = (shape.rows, shape.cols);
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| format!("{rows}x{cols} overflows"))?;
    let mut rng = Gen(0x9e37_79b9_7f4a_7c15);
    let x = rng.vec(n, -10.0, 10.0);
    let xb = storage(gpu, bytemuck::cast_slice(&x));
    if matches!(
        op,
        BenchOp::Read | BenchOp::Copy | BenchOp::ReadVec4 | BenchOp::CopyVec4
    ) {
        let copy = matches!(op, BenchOp::Copy | BenchOp::CopyVec4);
        let vec4 = matches!(op, BenchOp::ReadVec4 | BenchOp::CopyVec4);
        let words: Vec<u32> = bytemuck::cast_slice(&x).to_vec();
        let probe = match (copy, vec4) {
            (false, false) => ReadProbe::new(gpu, n),
            (true, false) => ReadProbe::copy(gpu, n),
            (false, true) => ReadProbe::read_vec4(gpu, n),
            (true, true) => ReadProbe::copy_vec4(gpu, n),
        }
        .map_err(lib)?;
        let out = output(gpu, probe.output_len());
        // The CPU copy writes into a buffer made (and faulted in) beforehand.
        let target = std::cell::RefCell::new(vec![0u32; if copy { n } else { 0 }]);
        return finish(
            op,
            shape,
            runs,
            gpu,
            &|e| probe.record(e, &xb, &out).map_err(lib),
            &|| probe.kernel_time(gpu, &xb, &out).map_err(lib),
            &|| {
                match (copy, vec4) {
                    (false, false) => gpu.read_probe(&words).map(drop),
                    (true, false) => gpu.copy_probe(&words).map(drop),
                    (false, true) => gpu.read_probe_vec4(&words).map(drop),
                    (true, true) => gpu.copy_probe_vec4(&words).map(drop),
                }
                .map_err(lib)
            },
            &|| {
                if copy {
                    target
                        .borrow_mut()
                        .copy_from_slice(std::hint::black_box(&words));
                    std::hint::black_box(&target);
                } else {
                    std::hint::black_box(cpu_read::read_sum(std::hint::black_box(&words)));
                }
                Ok(())
            },
            n as u64 * if copy { 8 } else { 4 },
        );
    }
    // With --f16 the values rounded to f16 are read as f16 by the ops that take it; the CPU
    // reference takes the same values as f32.
    let takes_f16 = matches!(
        op,
        BenchOp::Logsumexp
            | BenchOp::Softmax
            | BenchOp::LogSoftmax
            | BenchOp::CrossEntropy
            | BenchOp::GmmScoreSamples
    );
    let input = if f16 && takes_f16 {
        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        let x32: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
        let mut words = h.clone();
        if words.len() % 2 == 1 {
            words.push(half::f16::ZERO);
        }
        let buffer = storage(gpu, bytemuck::cast_slice(&words));
        Input {
            x: x32,
            h: Some(h),
            buffer,
            f16_out: false,
        }
    } else {
        Input {
            x,
            h: None,
            buffer: xb,
            f16_out: f16_out && matches!(op, BenchOp::Softmax | BenchOp::LogSoftmax),
        }
    };
    let mut row = rows_or_loss(gpu, op, shape, runs, &input)?;
    if input.h.is_some() {
        row.op.push_str("_f16");
    }
    if input.f16_out {
        row.op.push_str("_to_f16");
    }
    Ok(row)
}

/// A bench's main input: the values as f32, the same values as f16 when the op reads f16, and
/// the resident buffer the op reads (f16 entries when `h` is set); whether it writes f16.
struct Input {
    x: Vec<f32>,
    h: Option<Vec<half::f16>>,
    buffer: wgpu::Buffer,
    f16_out: bool,
}

impl Input {
    fn format(&self) -> InputFormat {
        if self.h.is_some() {
            InputFormat::F16
        } else {
            InputFormat::F32
        }
    }
}

fn rows_or_loss(
    gpu: &Gpu,
    op: BenchOp,
    shape: Shape,
    runs: usize,
    input: &Input,
) -> Result<Row, String> {
    let (rows, cols) = (shape.rows, shape.cols);
    let n = rows * cols;
    let func = match op {
        BenchOp::Logsumexp => RowFn::Logsumexp,
        BenchOp::Softmax => RowFn::Softmax,
        BenchOp::LogSoftmax => RowFn::LogSoftmax,
        _ => return loss_ops(gpu, op, shape, runs, input),
    };
    let out = output(gpu, func.output_len(rows, cols));
    let (x, h, input_format, f16_out) = (&input.x, &input.h, input.format(), input.f16_out);
    let input = &input.buffer;
    let layout = RowsLayout {
        input_format,
        output_format: if f16_out {
            OutputFormat::F16
        } else {
            OutputFormat::F32
        },
        ..RowsLayout::contiguous(rows, cols)
    };
    let row_op = RowOp::new(gpu, func, layout, Strategy::Auto).map_err(lib)?;
    finish(
        op,
        shape,
        runs,
        gpu,
        &|e| row_op.record(e, input, &out).map_err(lib),
        &|| gpu.kernel_time(&row_op, input, &out).map_err(lib),
        &|| {
            if f16_out {
                return match func {
                    RowFn::Softmax => gpu.softmax_to_f16(x, rows, cols),
                    _ => gpu.log_softmax_to_f16(x, rows, cols),
                }
                .map(drop)
                .map_err(lib);
            }
            match (&h, func) {
                (Some(h), RowFn::Logsumexp) => gpu.logsumexp_f16(h, rows, cols),
                (Some(h), RowFn::Softmax) => gpu.softmax_f16(h, rows, cols),
                (Some(h), _) => gpu.log_softmax_f16(h, rows, cols),
                (None, RowFn::Logsumexp) => gpu.logsumexp(x, rows, cols),
                (None, RowFn::Softmax) => gpu.softmax(x, rows, cols),
                (None, _) => gpu.log_softmax(x, rows, cols),
            }
            .map(drop)
            .map_err(lib)
        },
        &|| {
            match func {
                RowFn::Logsumexp => cpu_lse::logsumexp(x, rows, cols),
                RowFn::Softmax => cpu_lse::softmax(x, rows, cols),
                _ => cpu_lse::log_softmax(x, rows, cols),
            };
            Ok(())
        },
        n as u64 * input_format.bytes(),
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    op: BenchOp,
    shape: Shape,
    runs: usize,
    gpu: &Gpu,
    record: &dyn Fn(&mut wgpu::CommandEncoder) -> Result<(), String>,
    kernel: &dyn Fn() -> Result<Option<Duration>, String>,
    blocking: &dyn Fn() -> Result<(), String>,
    reference: &dyn Fn() -> Result<(), String>,
    bytes: u64,
) -> Result<Row, String> {
    let (gpu_time, clock) = if kernel()?.is_some() {
        // Warm-up: a real GPU left idle by the CPU reference of the previous measurement drops
        // its clocks (an H200 from 1980 to 345 MHz) and a few short kernels do not raise them
        // again; run the kernel for a quarter of a second first.
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(250) {
            kernel()?;
        }
        let mut v = Vec::with_capacity(runs);
        for _ in 0..runs {
            v.extend(kernel()?);
        }
        (median(v), "timestamps")
    } else {
        let t = time(runs, || {
            let mut encoder = gpu.device().create_command_encoder(&Default::default());
            record(&mut encoder)?;
            gpu.queue().submit([encoder.finish()]);
            gpu.device()
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| e.to_string())?;
            Ok(())
        })?;
        (t, "wall")
    };
    let end_to_end = time(runs, blocking)?;
    let cpu = time(runs.min(3), reference)?;
    Ok(Row {
        op: op
            .to_possible_value()
            .map_or_else(|| format!("{op:?}"), |v| v.get_name().to_string()),
        shape,
        gpu: gpu_time,
        gpu_clock: clock,
        end_to_end,
        cpu,
        bytes,
    })
}

/// The likelihood ops and the mixture.
fn loss_ops(
    gpu: &Gpu,
    op: BenchOp,
    shape: Shape,
    runs: usize,
    input: &Input,
) -> Result<Row, String> {
    let (x, h, xb) = (&input.x, &input.h, &input.buffer);
    let entry = input.format().bytes();
    let (rows, cols) = (shape.rows, shape.cols);
    let n = rows * cols;
    let mut rng = Gen(0x2545_f491_4f6c_dd1d);
    if op == BenchOp::GmmScoreSamples {
        let k = 16;
        let gmm = Gmm {
            weights: vec![1.0 / k as f32; k],
            means: rng.vec(k * cols, -2.0, 2.0),
            covariance: Covariance::Diag(rng.vec(k * cols, 0.5, 2.0)),
        };
        let gop = match h {
            Some(_) => GmmOp::new_f16(gpu, rows, cols, &gmm, GmmOutput::ScoreSamples),
            None => GmmOp::new(gpu, rows, cols, &gmm, GmmOutput::ScoreSamples),
        }
        .map_err(lib)?;
        let out = output(gpu, rows);
        return finish(
            op,
            shape,
            runs,
            gpu,
            &|e| gop.record(e, xb, &out).map_err(lib),
            &|| gop.kernel_time(gpu, xb, &out).map_err(lib),
            &|| {
                match h {
                    Some(h) => gpu.gmm_score_samples_f16(h, rows, cols, &gmm),
                    None => gpu.gmm_score_samples(x, rows, cols, &gmm),
                }
                .map(drop)
                .map_err(lib)
            },
            &|| {
                cpu_gmm::score_samples(x, rows, cols, &gmm);
                Ok(())
            },
            n as u64 * entry,
        );
    }
    let y = rng.vec(n, 0.0, 1.0);
    let yb = storage(gpu, bytemuck::cast_slice(&y));
    let targets: Vec<i64> = (0..rows).map(|r| (r * 7919 % cols) as i64).collect();
    let t32: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
    let tb = storage(gpu, bytemuck::cast_slice(&t32));
    let ce = CrossEntropy::default();
    let (lop, inputs, bytes): (LossOp, Vec<&wgpu::Buffer>, u64) = match op {
        BenchOp::CrossEntropy => (
            match h {
                Some(_) => LossOp::cross_entropy_f16(gpu, rows, cols, &ce),
                None => LossOp::cross_entropy(gpu, rows, cols, &ce),
            }
            .map_err(lib)?,
            vec![xb, &tb],
            n as u64 * entry + rows as u64 * 4,
        ),
        BenchOp::GaussianNll => (
            LossOp::gaussian_nll(gpu, n, false, &GaussianNll::default()).map_err(lib)?,
            vec![xb, &yb, &yb],
            3 * n as u64 * 4,
        ),
        BenchOp::BinaryCrossEntropyWithLogits => (
            LossOp::binary_cross_entropy_with_logits(gpu, rows, cols, &Bce::default())
                .map_err(lib)?,
            vec![xb, &yb],
            2 * n as u64 * 4,
        ),
        BenchOp::PoissonNll => (
            LossOp::poisson_nll(gpu, n, &PoissonNll::default()).map_err(lib)?,
            vec![xb, &yb],
            2 * n as u64 * 4,
        ),
        _ => (
            LossOp::log_prod(gpu, rows, cols).map_err(lib)?,
            vec![&yb],
            n as u64 * 4,
        ),
    };
    let out = output(gpu, lop.output_len());
    let blocking = || -> Result<(), String> {
        match op {
            BenchOp::CrossEntropy => match h {
                Some(h) => gpu.cross_entropy_f16(h, rows, cols, &targets, &ce),
                None => gpu.cross_entropy(x, rows, cols, &targets, &ce),
            },
            BenchOp::GaussianNll => gpu.gaussian_nll(x, &y, &y, &GaussianNll::default()),
            BenchOp::BinaryCrossEntropyWithLogits => {
                gpu.binary_cross_entropy_with_logits(x, &y, rows, cols, &Bce::default())
            }
            BenchOp::PoissonNll => gpu.poisson_nll(x, &y, &PoissonNll::default()),
            _ => gpu.log_prod(&y, rows, cols),
        }
        .map(drop)
        .map_err(lib)
    };
    let reference = || -> Result<(), String> {
        match op {
            BenchOp::CrossEntropy => cpu_ll::categorical(x, rows, cols, &targets, &ce, false),
            BenchOp::GaussianNll => cpu_ll::gaussian_nll(x, &y, &y, &GaussianNll::default()),
            BenchOp::BinaryCrossEntropyWithLogits => {
                cpu_ll::binary_cross_entropy_with_logits(x, &y, rows, cols, &Bce::default())
            }
            BenchOp::PoissonNll => cpu_ll::poisson_nll(x, &y, &PoissonNll::default()),
            _ => cpu_ll::log_prod(&y, rows, cols),
        };
        Ok(())
    };
    finish(
        op,
        shape,
        runs,
        gpu,
        &|e| lop.record(e, &inputs, &out).map_err(lib),
        &|| lop.kernel_time(gpu, &inputs, &out).map_err(lib),
        &blocking,
        &reference,
        bytes,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The rows as an aligned table.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<32} {:>14} {:>18} {:>14} {:>14} {:>9} {:>10}\n",
        "op", "shape", "GPU resident", "GPU end-to-end", "CPU reference", "GB/s", "CPU/GPU"
    );
    for r in rows {
        s += &format!(
            "{:<32} {:>14} {:>9.2} ms {:>5} {:>11.2} ms {:>11.2} ms {:>9.2} {:>9.1}×\n",
            r.op,
            format!("{}x{}", r.shape.rows, r.shape.cols),
            ms(r.gpu),
            if r.gpu_clock == "timestamps" {
                "(ts)"
            } else {
                "(wall)"
            },
            ms(r.end_to_end),
            ms(r.cpu),
            r.bytes as f64 / r.gpu.as_secs_f64() / 1e9,
            r.cpu.as_secs_f64() / r.gpu.as_secs_f64()
        );
    }
    s
}

/// The rows as JSON.
pub fn json(gpu: &Gpu, rows: &[Row]) -> String {
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "op": r.op,
                "rows": r.shape.rows,
                "cols": r.shape.cols,
                "gpu_ms": ms(r.gpu),
                "gpu_clock": r.gpu_clock,
                "end_to_end_ms": ms(r.end_to_end),
                "cpu_reference_ms": ms(r.cpu),
                "bytes_read": r.bytes,
                "gb_per_s": r.bytes as f64 / r.gpu.as_secs_f64() / 1e9,
                "cpu_over_gpu": r.cpu.as_secs_f64() / r.gpu.as_secs_f64(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "adapter": gpu.info().to_string(),
        "results": items,
    }))
    .unwrap_or_default()
}
