//! The blocking calls' copies on wgpu's GL backend: inputs written into the kernels' own buffers
//! with `glBufferSubData` and results read out of them with `glGetBufferSubData`, one copy each
//! way.
//!
//! wgpu offers GL no `MAPPABLE_PRIMARY_BUFFERS`, so its portable path copies an input from the
//! host into a mapped staging buffer and then, on the device, into the storage buffer, and a
//! result back the same way: three copies each way where the GL driver needs one (on llvmpipe a
//! 64 MiB copy is 7–10 ms of a 50 ms call). Here the crate creates the storage buffers itself, as
//! GL buffers of immutable storage with `GL_DYNAMIC_STORAGE_BIT` (which `glBufferSubData` needs),
//! and hands them to wgpu (`buffer_from_raw`, `create_buffer_from_hal`), which binds them to the
//! kernels as any other buffer and deletes them when they are dropped. GL runs commands in the
//! order its one context receives them, so an upload before `Queue::submit` is what the kernel
//! reads; before reading a result the crate waits for the submission and issues
//! `glMemoryBarrier(GL_BUFFER_UPDATE_BARRIER_BIT)`, which orders the kernels' storage writes
//! before the read.
//!
//! Linux only (EGL, the GL context wgpu's GL backend uses there); elsewhere, and wherever the
//! device is not GL, the blocking calls take the portable path.

use super::device::Gpu;
use crate::error::Error;

/// A storage buffer of the blocking calls that GL calls write and read.
#[derive(Clone)]
pub(crate) struct GlBuffer {
    pub(crate) buffer: wgpu::Buffer,
    #[cfg(target_os = "linux")]
    name: glow::NativeBuffer,
}

impl Gpu {
    /// Whether the blocking calls copy through [`GlBuffer`]s: on wgpu's GL backend, on Linux.
    pub(crate) fn gl_direct(&self) -> bool {
        cfg!(target_os = "linux") && self.info().backend == wgpu::Backend::Gl
    }
}

#[cfg(not(target_os = "linux"))]
impl Gpu {
    pub(crate) fn new_gl_buffer(&self, _: u64, _: &str) -> Result<Option<GlBuffer>, Error> {
        Ok(None)
    }

    pub(crate) fn gl_write(&self, _: &GlBuffer, _: &[u8]) -> Result<(), Error> {
        Err(Error::Gpu(
            "GL buffers are written by GL calls on Linux only".into(),
        ))
    }

    pub(crate) fn gl_read(&self, _: &GlBuffer, _: u64) -> Result<Vec<f32>, Error> {
        Err(Error::Gpu(
            "GL buffers are read by GL calls on Linux only".into(),
        ))
    }
}

#[cfg(target_os = "linux")]
use {super::host, glow::HasContext, wgpu::hal::api::Gles};

#[cfg(target_os = "linux")]
impl Gpu {
    /// A new storage buffer (`STORAGE | COPY_SRC | COPY_DST`) of `size` bytes that
    /// [`Gpu::gl_write`] and [`Gpu::gl_read`] reach, or `None` where the device is not GL or
    /// `size` exceeds GL's signed 32-bit sizes. Called under the GL guard.
    pub(crate) fn new_gl_buffer(&self, size: u64, label: &str) -> Result<Option<GlBuffer>, Error> {
        let Ok(gl_size) = i32::try_from(size) else {
            return Ok(None);
        };
        // SAFETY: `as_hal` gives wgpu-hal's GL device, which outlives this call; its context lock
        // makes the EGL context current on this thread for the GL calls below. The buffer name
        // is new and bound only here; the binding point is reset to none, as wgpu-hal binds what
        // it uses before each command. `buffer_from_raw` receives a buffer of immutable storage
        // of exactly `size` bytes, with no mapping flags, matching the descriptor (no MAP_*
        // usage); with `None` as its drop callback wgpu-hal owns the name and deletes it when
        // wgpu drops the buffer. `create_buffer_from_hal` receives that buffer with the same size
        // and usages; wgpu treats it as initialised, and the blocking calls write every byte a
        // kernel reads before the kernel runs.
        unsafe {
            let Some(device) = self.device.as_hal::<Gles>() else {
                return Ok(None);
            };
            let gl = device.context().lock();
            // Errors an earlier GL call left pending are not this buffer's (GL keeps at most one
            // per kind).
            for _ in 0..8 {
                if gl.get_error() == glow::NO_ERROR {
                    break;
                }
            }
            let name = gl
                .create_buffer()
                .map_err(|e| Error::Gpu(format!("glCreateBuffer: {e}")))?;
            gl.bind_buffer(glow::COPY_WRITE_BUFFER, Some(name));
            gl.buffer_storage(
                glow::COPY_WRITE_BUFFER,
                gl_size,
                None,
                glow::DYNAMIC_STORAGE_BIT,
            );
            gl.bind_buffer(glow::COPY_WRITE_BUFFER, None);
            let err = gl.get_error();
            if err != glow::NO_ERROR {
                gl.delete_buffer(name);
                return Err(Error::Gpu(format!(
                    "glBufferStorage of {size} bytes for the {label}: GL error {err:#x}"
                )));
            }
            drop(gl);
            let usage = wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST;
            let hal_buffer = device.buffer_from_raw(
                name.0,
                &wgpu::hal::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage: wgpu::wgt::BufferUses::STORAGE_READ_ONLY
                        | wgpu::wgt::BufferUses::STORAGE_READ_WRITE
                        | wgpu::wgt::BufferUses::COPY_SRC
                        | wgpu::wgt::BufferUses::COPY_DST,
                    memory_flags: wgpu::hal::MemoryFlags::empty(),
                },
                None,
            );
            drop(device);
            let buffer = self.device.create_buffer_from_hal::<Gles>(
                hal_buffer,
                &wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage,
                    mapped_at_creation: false,
                },
            );
            Ok(Some(GlBuffer { buffer, name }))
        }
    }

    /// Writes `bytes` at the start of `b` (`glBufferSubData`), before any later submission.
    pub(crate) fn gl_write(&self, b: &GlBuffer, bytes: &[u8]) -> Result<(), Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        if bytes.len() as u64 > b.buffer.size() {
            return Err(Error::Buffer(format!(
                "cannot write {} bytes into a buffer of {}",
                bytes.len(),
                b.buffer.size()
            )));
        }
        let _gl = self.gl_guard();
        // SAFETY: `b.name` is alive as long as `b.buffer`, has `GL_DYNAMIC_STORAGE_BIT` and
        // holds at least `bytes.len()` bytes (checked above); the binding point is reset.
        self.with_context(|gl| unsafe {
            gl.bind_buffer(glow::COPY_WRITE_BUFFER, Some(b.name));
            gl.buffer_sub_data_u8_slice(glow::COPY_WRITE_BUFFER, 0, bytes);
            gl.bind_buffer(glow::COPY_WRITE_BUFFER, None);
        })
    }

    /// Waits for the work submitted so far, then reads the first `bytes` bytes of `b`
    /// (`glGetBufferSubData`) into a new vector.
    pub(crate) fn gl_read(&self, b: &GlBuffer, bytes: u64) -> Result<Vec<f32>, Error> {
        if bytes > b.buffer.size() || !bytes.is_multiple_of(4) {
            return Err(Error::Buffer(format!(
                "cannot read {bytes} bytes of f32 from a buffer of {}",
                b.buffer.size()
            )));
        }
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let _gl = self.gl_guard();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        // Zeroed by the allocator (fresh pages for a large result, not written here), then
        // advised into huge pages before GL writes it.
        let mut out = vec![0f32; (bytes / 4) as usize];
        host::advise_huge_slice(&mut out);
        // SAFETY: as in `gl_write`; `out` holds exactly `bytes` bytes, which GL overwrites.
        self.with_context(|gl| unsafe {
            gl.memory_barrier(glow::BUFFER_UPDATE_BARRIER_BIT);
            gl.bind_buffer(glow::COPY_READ_BUFFER, Some(b.name));
            gl.get_buffer_sub_data(
                glow::COPY_READ_BUFFER,
                0,
                bytemuck::cast_slice_mut(&mut out),
            );
            gl.bind_buffer(glow::COPY_READ_BUFFER, None);
        })?;
        Ok(out)
    }

    /// Runs `f` with wgpu-hal's GL context locked and current on this thread.
    fn with_context<R>(&self, f: impl FnOnce(&glow::Context) -> R) -> Result<R, Error> {
        // SAFETY: `as_hal` gives wgpu-hal's GL device, alive while the guard it returns is;
        // `f` only receives the context under its lock, and the callers' GL calls leave the
        // binding points they use as they found them (none), as wgpu-hal binds what it uses
        // before each command.
        let device = unsafe { self.device.as_hal::<Gles>() }
            .ok_or_else(|| Error::Gpu("not a GL device".into()))?;
        let gl = device.context().lock();
        Ok(f(&gl))
    }
}
