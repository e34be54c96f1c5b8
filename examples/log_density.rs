//! The log-density of a 2-D Gaussian mixture on every pixel of a grid, inside one frame: the
//! crate's mixture kernel (`GmmOp`) records the scores into the frame's command encoder, a copy
//! puts them in a texture, and a render pass colours them — no submit in between, no readback,
//! no copy of the renderer's data. Two panels: the log-density (left) and the density on a
//! linear scale (right), where everything but the peaks is black: the reason for the log scale.
//!
//! `cargo run --release --example log_density -- [--size 1024] [--out log_density.png]`

mod common;

use std::path::{Path, PathBuf};

use common::*;
use logdomain::{Covariance, Gmm, GmmOp, GmmOutput, Gpu};

/// What a run computed, for the test and the printout.
pub struct Summary {
    /// Mean over the grid of the GPU's log-densities (read back after the frame).
    pub gpu_mean: f64,
    /// The same from the CPU reference.
    pub cpu_mean: f64,
    pub png: PathBuf,
}

/// Upper-triangular `U` with `U Uᵀ = Σ⁻¹` for a 2 × 2 covariance (scikit-learn's
/// `precisions_cholesky_`), row-major.
fn precision_cholesky(sxx: f32, sxy: f32, syy: f32) -> [f32; 4] {
    let a = sxx.sqrt();
    let b = sxy / a;
    let c = (syy - b * b).sqrt();
    [1.0 / a, -b / (a * c), 0.0, 1.0 / c]
}

/// Five tilted components of very different spreads and weights.
pub fn mixture() -> Gmm {
    let comps = [
        // weight, mean, covariance (xx, xy, yy)
        (0.35, [-1.5, 1.0], (0.6, 0.25, 0.3)),
        (0.25, [1.8, 1.6], (0.15, -0.05, 0.4)),
        (0.2, [0.5, -1.8], (1.2, 0.5, 0.5)),
        (0.15, [-2.2, -2.0], (0.05, 0.0, 0.05)),
        (0.05, [2.6, -0.6], (0.02, 0.01, 0.03)),
    ];
    let mut weights = Vec::new();
    let mut means = Vec::new();
    let mut prec = Vec::new();
    for (w, m, (xx, xy, yy)) in comps {
        weights.push(w);
        means.extend(m);
        prec.extend(precision_cholesky(xx, xy, yy));
    }
    Gmm {
        weights,
        means,
        covariance: Covariance::Full(prec),
    }
}

const EXTENT: f32 = 4.0;
/// The log panel shows [max − RANGE, max] nats.
const RANGE: f32 = 30.0;

const SHADER: &str = r#"
struct View {
    hi: f32,
    range: f32,
    size: u32,
    pad: u32,
}
@group(0) @binding(0) var field: texture_2d<f32>;
@group(0) @binding(1) var<uniform> view: View;

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let right = in.uv.x >= 0.5;
    let u = fract(in.uv.x * 2.0);
    let px = min(u32(u * f32(view.size)), view.size - 1u);
    let py = min(u32(in.uv.y * f32(view.size)), view.size - 1u);
    let lp = textureLoad(field, vec2<u32>(px, py), 0).x;
    var t: f32;
    if (right) {
        t = exp(lp - view.hi);
    } else {
        t = (lp - (view.hi - view.range)) / view.range;
    }
    return vec4<f32>(colormap(t), 1.0);
}
"#;

pub fn run(gpu: &Gpu, size: u32, png: &Path) -> Result<Summary> {
    if size == 0 || !size.is_multiple_of(64) {
        return Err(format!("--size {size}: a positive multiple of 64"));
    }
    let device = gpu.device();
    let n = (size * size) as usize;
    let gmm = mixture();
    // The grid, one point per pixel centre, row 0 at the top.
    let step = 2.0 * EXTENT / size as f32;
    let mut points = Vec::with_capacity(2 * n);
    for py in 0..size {
        for px in 0..size {
            points.push(-EXTENT + (px as f32 + 0.5) * step);
            points.push(EXTENT - (py as f32 + 0.5) * step);
        }
    }
    use wgpu::util::DeviceExt;
    let points_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("grid"),
        contents: bytemuck::cast_slice(&points),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let density = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("log-density"),
        size: n as u64 * 4,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let op = GmmOp::new(gpu, n, 2, &gmm, GmmOutput::ScoreSamples).map_err(|e| e.to_string())?;
    // The colour scale's top: the largest log-density, at (or next to) a component's mean —
    // host arithmetic on the parameters, not a readback.
    let hi = logdomain::reference::gmm::score_samples(&gmm.means, gmm.weights.len(), 2, &gmm)
        .into_iter()
        .fold(f32::NEG_INFINITY, f32::max);
    let view_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("view"),
        contents: bytemuck::cast_slice(&[hi.to_bits(), RANGE.to_bits(), size, 0]),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let layout = texture_uniform_layout(gpu);
    let pipeline = pipeline(gpu, &format!("{COLORMAP_WGSL}\n{SHADER}"), &layout);
    let target = target(gpu, 2 * size, size);
    let target_view = target.create_view(&Default::default());

    // The frame: one encoder, one submit.
    let mut encoder = device.create_command_encoder(&Default::default());
    op.record(&mut encoder, &points_buf, &density)
        .map_err(|e| e.to_string())?;
    let field = float_texture(gpu, &mut encoder, &density, size, size);
    let field_view = field.create_view(&Default::default());
    let group = texture_uniform_group(gpu, &layout, &field_view, &view_buf);
    draw(&mut encoder, &target_view, &pipeline, &group);
    gpu.queue().submit([encoder.finish()]);

    let rgba = read_rgba(gpu, &target)?;
    write_png(png, 2 * size, size, &rgba)?;
    // The numbers, after the frame: the GPU's log-densities against the CPU reference.
    let got = gpu
        .read_f32(&density, n as u64 * 4)
        .map_err(|e| e.to_string())?;
    let want = logdomain::reference::gmm::score_samples(&points, n, 2, &gmm);
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    Ok(Summary {
        gpu_mean: mean(&got),
        cpu_mean: mean(&want),
        png: png.to_path_buf(),
    })
}

fn main() {
    let go = || -> Result<()> {
        let size: u32 = arg("--size", 1024)?;
        let out: PathBuf = arg("--out", PathBuf::from("log_density.png"))?;
        let gpu = Gpu::new().map_err(|e| e.to_string())?;
        println!("adapter: {}", gpu.info());
        let s = run(&gpu, size, &out)?;
        println!(
            "{size} × {size} grid: mean log-density GPU {:.6}, CPU reference {:.6}; wrote {}",
            s.gpu_mean,
            s.cpu_mean,
            s.png.display()
        );
        Ok(())
    };
    if let Err(e) = go() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_grid_matches_the_cpu_and_writes_the_png() {
        let gpu = logdomain::Gpu::new().unwrap_or_else(|e| panic!("{e}"));
        let png = std::env::temp_dir().join(format!("log_density-{}.png", std::process::id()));
        let s = super::run(&gpu, 64, &png).unwrap();
        // Each of the 4,096 log-densities is within a few ulp of the CPU's (the same
        // operations, up to the GPU's contraction of multiply-adds): so is their mean.
        let bound = 1e-5 * (1.0 + s.cpu_mean.abs());
        assert!(
            (s.gpu_mean - s.cpu_mean).abs() <= bound,
            "{} vs {}",
            s.gpu_mean,
            s.cpu_mean
        );
        assert!(s.cpu_mean < -3.0 && s.cpu_mean > -60.0, "{}", s.cpu_mean);
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let _ = std::fs::remove_file(png);
    }
}
