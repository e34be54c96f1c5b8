//! Auto-exposure inside a frame, the classic of real-time renderers: the log-average luminance
//! `exp(mean(ln(δ + L)))` of an HDR image is computed by the crate's `LogOp::mean_log` over the
//! image copied into a buffer (rows padded to 256 bytes, read through a row stride), in the
//! frame's command encoder, and a render pass tone-maps with it — no readback between them.
//! The image is procedural: a bright sky seen through a window of a dark interior (10⁵:1).
//! Writes the picture with a fixed exposure metered for the sky (before: the room is black) and
//! with the computed one (after: the room is readable, the window blown out, as a camera that
//! meters the whole frame would show it).
//!
//! `cargo run --release --example auto_exposure -- [--width 1000] [--height 750] [--out DIR]`

mod common;

use std::path::{Path, PathBuf};

use common::*;
use logdomain::{DataLayout, Gpu, LogOp};

/// What a run computed, for the test and the printout.
pub struct Summary {
    /// The log-average luminance from the GPU's mean of logs (read back after the frame).
    pub gpu: f64,
    /// The same in f64 on the CPU.
    pub cpu: f64,
    pub before: PathBuf,
    pub after: PathBuf,
}

const DELTA: f32 = 1e-4;
/// Reinhard's "key": the mid-grey the log-average luminance is mapped to.
const KEY: f32 = 0.18;
/// The fixed exposure of the "before" picture, metered for the sky.
const SKY_EXPOSURE: f32 = 1e-4;

/// Luminance at (x, y) in [0, 1]²: a dim room (0.01–0.3 cd/m²-like units) with a window onto a
/// sky of 10³–10⁴ and a sun disc of 2·10⁴.
pub fn luminance(x: f32, y: f32) -> f32 {
    let window = (0.55..0.9).contains(&x) && (0.12..0.55).contains(&y);
    if window {
        let sun = ((x - 0.75).powi(2) + (y - 0.25).powi(2)).sqrt() < 0.04;
        if sun {
            2.0e4
        } else {
            1.0e3 + 9.0e3 * (1.0 - y / 0.55)
        }
    } else {
        // A lamp-lit gradient on the walls and a darker floor.
        let wall = 0.3 * (-((x - 0.2).powi(2) + (y - 0.3).powi(2)) * 6.0).exp() + 0.01;
        if y > 0.75 { wall * 0.5 } else { wall }
    }
}

const SHADER: &str = r#"
struct Exposure {
    mean_log: f32,
    key: f32,
    automatic: u32,
    pad: u32,
}
@group(0) @binding(0) var hdr: texture_2d<f32>;
@group(0) @binding(1) var<uniform> exposure: Exposure;

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let size = textureDimensions(hdr);
    let p = min(vec2<u32>(in.uv * vec2<f32>(size)), size - 1u);
    let l = textureLoad(hdr, p, 0).x;
    var mapped: f32;
    if (exposure.automatic != 0u) {
        // Reinhard: scale the log-average to the key, then compress.
        let ls = l * exposure.key / exp(exposure.mean_log);
        mapped = ls / (1.0 + ls);
    } else {
        // A fixed exposure (the key), metered for the sky: the room goes black.
        mapped = clamp(l * exposure.key, 0.0, 1.0);
    }
    // Warm light indoors, a cool sky through the window.
    let tint = mix(vec3<f32>(1.0, 0.85, 0.65), vec3<f32>(0.75, 0.85, 1.0), clamp(log(l + 1.0) / 9.0, 0.0, 1.0));
    return vec4<f32>(pow(mapped * tint, vec3<f32>(1.0 / 2.2)), 1.0);
}
"#;

pub fn run(gpu: &Gpu, width: u32, height: u32, dir: &Path) -> Result<Summary> {
    if width == 0 || height == 0 {
        return Err("--width and --height must be positive".into());
    }
    use wgpu::util::DeviceExt;
    let device = gpu.device();
    let mut texels = Vec::with_capacity((width * height) as usize);
    for py in 0..height {
        for px in 0..width {
            texels.push(luminance(
                (px as f32 + 0.5) / width as f32,
                (py as f32 + 0.5) / height as f32,
            ));
        }
    }
    let size = wgpu::Extent3d {
        width,
        height,
        depth_or_array_layers: 1,
    };
    let hdr = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("hdr"),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::R32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING
            | wgpu::TextureUsages::COPY_SRC
            | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    gpu.queue().write_texture(
        hdr.as_image_copy(),
        bytemuck::cast_slice(&texels),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(width * 4),
            rows_per_image: Some(height),
        },
        size,
    );
    // The renderer's resources, made once: a buffer the image is copied into (rows padded to
    // 256 bytes), the op, its output and the exposure uniforms.
    let bytes_per_row = (width * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let copy = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("hdr copy"),
        size: u64::from(bytes_per_row * height),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let op = LogOp::mean_log(
        gpu,
        DELTA,
        DataLayout::texture_copy(width, height, bytes_per_row),
    )
    .map_err(|e| e.to_string())?;
    let mean_log = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("mean log luminance"),
        size: 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let uniforms: Vec<wgpu::Buffer> = [(SKY_EXPOSURE, 0u32), (KEY, 1)]
        .iter()
        .map(|&(key, automatic)| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("exposure"),
                contents: bytemuck::cast_slice(&[0f32.to_bits(), key.to_bits(), automatic, 0]),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
        })
        .collect();
    let layout = texture_uniform_layout(gpu);
    let pipeline = pipeline(gpu, SHADER, &layout);
    let hdr_view = hdr.create_view(&Default::default());
    let groups: Vec<wgpu::BindGroup> = uniforms
        .iter()
        .map(|u| texture_uniform_group(gpu, &layout, &hdr_view, u))
        .collect();
    let targets = [target(gpu, width, height), target(gpu, width, height)];

    // The frame: copy the image into the buffer, its mean of logs, the exposure into the
    // uniforms, and both tone-mapped pictures — one encoder, one submit.
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        hdr.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &copy,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(bytes_per_row),
                rows_per_image: Some(height),
            },
        },
        size,
    );
    op.record(&mut encoder, &copy, &mean_log)
        .map_err(|e| e.to_string())?;
    encoder.copy_buffer_to_buffer(&mean_log, 0, &uniforms[1], 0, 4);
    for (t, g) in targets.iter().zip(&groups) {
        draw(
            &mut encoder,
            &t.create_view(&Default::default()),
            &pipeline,
            g,
        );
    }
    gpu.queue().submit([encoder.finish()]);

    let before = dir.join("auto_exposure_before.png");
    let after = dir.join("auto_exposure_after.png");
    for (t, path) in targets.iter().zip([&before, &after]) {
        let rgba = read_rgba(gpu, t)?;
        write_png(path, width, height, &rgba)?;
    }
    let got = gpu.read_f32(&mean_log, 4).map_err(|e| e.to_string())?[0];
    let cpu = texels
        .iter()
        .map(|&l| (f64::from(l) + f64::from(DELTA)).ln())
        .sum::<f64>()
        / texels.len() as f64;
    Ok(Summary {
        gpu: f64::from(got).exp(),
        cpu: cpu.exp(),
        before,
        after,
    })
}

fn main() {
    let go = || -> Result<()> {
        let width: u32 = arg("--width", 1000)?;
        let height: u32 = arg("--height", 750)?;
        let out: PathBuf = arg("--out", PathBuf::from("."))?;
        let gpu = Gpu::new().map_err(|e| e.to_string())?;
        println!("adapter: {}", gpu.info());
        let s = run(&gpu, width, height, &out)?;
        println!(
            "{width} × {height} HDR image: log-average luminance GPU {:.6}, CPU {:.6}; wrote {} and {}",
            s.gpu,
            s.cpu,
            s.before.display(),
            s.after.display()
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
    fn small_image_exposure_matches_the_cpu_and_writes_the_pngs() {
        let gpu = logdomain::Gpu::new().unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(format!("auto_exposure-{}", std::process::id()));
        // 100 columns: 400-byte rows padded to 512 in the copy.
        let s = super::run(&gpu, 100, 75, &dir).unwrap();
        // The mean of 7,500 logs within (depth + 8)·u·mean|ln| of f64 (see tests/transform.rs),
        // so the exposure within that relative error.
        let rel = (s.gpu - s.cpu).abs() / s.cpu;
        assert!(rel <= 2e-5, "GPU {} vs CPU {}", s.gpu, s.cpu);
        for p in [&s.before, &s.after] {
            let bytes = std::fs::read(p).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
