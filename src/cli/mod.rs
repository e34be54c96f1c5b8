//! The `logdomain` command's subcommands.

pub mod bench;
pub mod demo;
pub mod eval;
pub mod fit;
pub mod npy;
pub mod stability;

use wgpu::util::DeviceExt;

/// The temporary file an output is written to before it is renamed into place: beside it, named
/// after it and this process.
pub fn partial_path(path: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file path", path.display()))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".partial-{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// Reproducible inputs (xorshift64) for the demo, the benches and the stability study.
pub struct Gen(pub u64);

impl Gen {
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (hi - lo) * ((self.0 >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// A storage buffer holding `data`.
pub fn storage(gpu: &logdomain::Gpu, data: &[u8]) -> wgpu::Buffer {
    gpu.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: data,
            usage: wgpu::BufferUsages::STORAGE,
        })
}

/// A storage buffer for `values` f32 outputs (at least one).
pub fn output(gpu: &logdomain::Gpu, values: usize) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (values.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}
