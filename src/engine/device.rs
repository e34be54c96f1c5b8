//! The device: adapter choice, the bind-group layouts every module binds against, the
//! unused-binding buffers, the crate's GL lock and its guarded buffer calls.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::blocking::Blocking;
use super::pipelines::{Binding, Layout, Module, PipelineKey};
use crate::error::Error;

/// What runs: the adapter and the optional features the kernels use on it.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    /// Adapter name, as the driver reports it (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// wgpu backend (Vulkan, Metal, Dx12, Gl, BrowserWebGpu).
    pub backend: wgpu::Backend,
    /// Discrete, integrated, CPU (software), virtual or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name and version.
    pub driver: String,
    /// The optional features enabled on the device that the kernels can use
    /// (`SUBGROUP`, `SHADER_F16`, `TIMESTAMP_QUERY`).
    pub features: wgpu::Features,
    /// Smallest and largest subgroup size the adapter may use.
    pub subgroup_sizes: (u32, u32),
}

impl fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}, {:?}",
            self.name, self.backend, self.device_type
        )?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        let names: Vec<&str> = [
            (wgpu::Features::SUBGROUP, "subgroups"),
            (wgpu::Features::SHADER_F16, "f16"),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamps"),
        ]
        .iter()
        .filter(|(feat, _)| self.features.contains(*feat))
        .map(|(_, name)| *name)
        .collect();
        if names.is_empty() {
            write!(f, "; no optional features)")
        } else {
            write!(f, "; {})", names.join(", "))
        }
    }
}

/// The optional features `Gpu::new` turns on where the adapter has them.
pub const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::TIMESTAMP_QUERY);

/// Which adapter [`Gpu::with_choice`] takes: a backend, a substring of the adapter's name and a
/// power preference, each optional (`Default`: wgpu's choice among every backend).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdapterChoice {
    /// `vulkan`, `gl`, `metal`, `dx12` or `webgpu` (or a comma-separated list, as
    /// `WGPU_BACKEND` takes); `None` for every backend.
    pub backend: Option<String>,
    /// A case-insensitive substring of the adapter's name (e.g. `llvmpipe`).
    pub name: Option<String>,
    /// Low power or high performance, where `name` is `None`.
    pub power: Option<wgpu::PowerPreference>,
}

impl AdapterChoice {
    /// `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF`, where set.
    pub fn from_env() -> Result<AdapterChoice, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let choice = AdapterChoice {
            backend: var("WGPU_BACKEND"),
            name: var("WGPU_ADAPTER_NAME"),
            power: wgpu::PowerPreference::from_env(),
        };
        choice.backends().map_err(|e| match e {
            Error::Value(why) => Error::Value(format!("WGPU_BACKEND: {why}")),
            other => other,
        })?;
        Ok(choice)
    }

    /// The backends `backend` names; an error for a name wgpu does not know.
    fn backends(&self) -> Result<wgpu::Backends, Error> {
        let Some(list) = &self.backend else {
            return Ok(wgpu::Backends::all());
        };
        let mut backends = wgpu::Backends::empty();
        for name in list.split(',') {
            let one = wgpu::Backends::from_comma_list(name);
            if one.is_empty() {
                return Err(Error::Value(format!(
                    "unknown backend {:?}; the backends are vulkan, gl, metal, dx12, webgpu",
                    name.trim()
                )));
            }
            backends |= one;
        }
        Ok(backends)
    }
}

/// An instance of `backends` with wgpu's other options from the environment.
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn info_of(adapter: &wgpu::AdapterInfo, features: wgpu::Features) -> GpuInfo {
    GpuInfo {
        name: adapter.name.clone(),
        backend: adapter.backend,
        device_type: adapter.device_type,
        driver: format!("{} {}", adapter.driver, adapter.driver_info)
            .trim()
            .to_string(),
        features: features & OPTIONAL_FEATURES,
        subgroup_sizes: (adapter.subgroup_min_size, adapter.subgroup_max_size),
    }
}

/// Whether an adapter of this type computes on the host's memory (CPU adapters, integrated
/// GPUs): there the blocking calls map their kernels' own buffers
/// (`Features::MAPPABLE_PRIMARY_BUFFERS`) instead of copying through staging buffers.
pub(crate) fn unified_memory(t: wgpu::DeviceType) -> bool {
    matches!(t, wgpu::DeviceType::Cpu | wgpu::DeviceType::IntegratedGpu)
}

/// A wgpu device with `logdomain`'s pipelines. Cheap to share by reference across threads.
///
/// ```no_run
/// let gpu = logdomain::Gpu::new()?;
/// println!("running on {}", gpu.info());
/// let lse = gpu.logsumexp(&[0.0, 0.0, 1000.0, 1000.0], 2, 2)?;
/// assert!((lse[1] - 1000.6931).abs() < 1e-3);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: GpuInfo,
    pub(crate) limits: wgpu::Limits,
    /// The bind-group layout of each [`Layout`] with its pipeline layout; `None` where the
    /// device lacks the storage buffers it needs (the wide layout).
    layouts: [Option<(wgpu::BindGroupLayout, wgpu::PipelineLayout)>; Layout::COUNT],
    pub(super) modules: Mutex<HashMap<Module, wgpu::ShaderModule>>,
    pub(super) pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// Bound where a kernel's layout has a binding it does not use: one read-only buffer and
    /// one per read-write binding of a layout ([`Layout::bindings`]), since a read-only and a
    /// read-write use of one buffer, or two read-write uses, conflict.
    pub(crate) dummies: [wgpu::Buffer; 3],
    /// Bound as a uniform window where a kernel does not use it.
    pub(crate) dummy_uniform: wgpu::Buffer,
    pub(super) blocking: Mutex<Blocking>,
    /// Prepared ops of the blocking calls, by type and key ([`Gpu::cached_op`]).
    pub(super) ops: Mutex<HashMap<OpKey, Arc<dyn std::any::Any + Send + Sync>>>,
    /// Held around every GL call of the crate's own on a GL device; see [`Gpu::gl_guard`].
    gl: GlLock,
    /// Whether the blocking runner fills outputs with the sentinel ([`Gpu::fill_outputs_with_sentinel`]).
    pub(super) sentinel_fill: std::sync::atomic::AtomicBool,
}

/// The key of a cached op: its type and a key of the family's choosing.
pub(super) type OpKey = (std::any::TypeId, [u64; 6]);

/// The crate's lock around its own GL calls on one GL device (see [`Gpu::bounded_submits`]);
/// empty elsewhere. Ops keep a clone, to destroy their buffers under it.
#[derive(Clone, Default)]
pub(crate) struct GlLock(Option<Arc<Mutex<()>>>);

impl GlLock {
    /// Held until the guard goes; `None` off GL.
    pub fn guard(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        self.0.as_deref().map(lock)
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic in another thread cannot leave these caches half-written in a harmful way.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Picks an adapter the wgpu way and creates a device (blocking). Honours `WGPU_BACKEND`
    /// (e.g. `vulkan`, `gl`), `WGPU_ADAPTER_NAME` (a substring of the adapter's name) and
    /// `WGPU_POWER_PREF` (`low`, `high`): [`Gpu::with_choice`] of [`AdapterChoice::from_env`].
    /// The device gets the adapter's own limits and the optional features in
    /// [`OPTIONAL_FEATURES`] that the adapter has.
    pub fn new() -> Result<Gpu, Error> {
        Self::with_choice(&AdapterChoice::from_env()?)
    }

    /// The async form of [`Gpu::new`].
    pub async fn new_async() -> Result<Gpu, Error> {
        Self::with_choice_async(&AdapterChoice::from_env()?).await
    }

    /// A device on the adapter `choice` names (blocking); the environment variables are not
    /// read.
    ///
    /// ```no_run
    /// use logdomain::{AdapterChoice, Gpu};
    /// let choice = AdapterChoice { backend: Some("vulkan".into()), ..Default::default() };
    /// let gpu = Gpu::with_choice(&choice)?;
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn with_choice(choice: &AdapterChoice) -> Result<Gpu, Error> {
        pollster::block_on(Self::with_choice_async(choice))
    }

    /// The async form of [`Gpu::with_choice`].
    pub async fn with_choice_async(choice: &AdapterChoice) -> Result<Gpu, Error> {
        let backends = choice.backends()?;
        let instance = instance(backends);
        let adapter = match &choice.name {
            Some(want) => {
                let want = want.to_lowercase();
                let adapters = instance.enumerate_adapters(backends).await;
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want))
                    .ok_or_else(|| {
                        Error::NoAdapter(format!(
                            "no adapter name contains {want:?}; the adapters are {names:?}"
                        ))
                    })?
            }
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: choice.power.unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::NoAdapter(format!("{e}; backends {backends:?}")))?,
        };
        let mut features = adapter.features() & OPTIONAL_FEATURES;
        if unified_memory(adapter.get_info().device_type)
            && adapter
                .features()
                .contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS)
        {
            features |= wgpu::Features::MAPPABLE_PRIMARY_BUFFERS;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("logdomain"),
                required_features: features,
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice(e.to_string()))?;
        Ok(Self::from_device(device, queue))
    }

    /// The adapters of `backend` (a name as `WGPU_BACKEND` takes, `None` for every backend)
    /// that a [`Gpu`] could be made on, without making one. `features` are the optional ones
    /// the adapter has.
    pub fn adapters(backend: Option<&str>) -> Result<Vec<GpuInfo>, Error> {
        let choice = AdapterChoice {
            backend: backend.map(str::to_string),
            ..Default::default()
        };
        let backends = choice.backends()?;
        let adapters = pollster::block_on(instance(backends).enumerate_adapters(backends));
        Ok(adapters
            .iter()
            .map(|a| info_of(&a.get_info(), a.features()))
            .collect())
    }

    /// Wraps a device an application already owns (a renderer's). Its limits and features are
    /// used as they are: subgroup kernels run only if the device was created with
    /// `Features::SUBGROUP`.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        let adapter = device.adapter_info();
        let info = info_of(&adapter, device.features());
        let limits = device.limits();
        let layouts = Layout::ALL.map(|l| {
            let entries: Vec<wgpu::BindGroupLayoutEntry> = l
                .bindings()
                .iter()
                .enumerate()
                .map(|(i, kind)| wgpu::BindGroupLayoutEntry {
                    binding: i as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: match kind {
                            Binding::Uniform(_) => wgpu::BufferBindingType::Uniform,
                            Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                            Binding::Write => wgpu::BufferBindingType::Storage { read_only: false },
                        },
                        has_dynamic_offset: false,
                        min_binding_size: match kind {
                            Binding::Uniform(size) => wgpu::BufferSize::new(*size),
                            _ => None,
                        },
                    },
                    count: None,
                })
                .collect();
            let storage = entries.iter().filter(|e| {
                matches!(
                    e.ty,
                    wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { .. },
                        ..
                    }
                )
            });
            if storage.count() as u32 > limits.max_storage_buffers_per_shader_stage {
                return None;
            }
            let group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(l.label()),
                entries: &entries,
            });
            let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(l.label()),
                bind_group_layouts: &[Some(&group)],
                immediate_size: 0,
            });
            Some((group, pipeline))
        });
        let dummy_uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused uniform"),
            size: Layout::ALL
                .iter()
                .flat_map(|l| l.bindings())
                .filter_map(|b| match b {
                    Binding::Uniform(size) => Some(*size),
                    _ => None,
                })
                .max()
                .unwrap_or(16),
            usage: wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        });
        let dummies = ["unused input", "unused output", "unused states"].map(|label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 256,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        });
        let gl = GlLock((info.backend == wgpu::Backend::Gl).then(|| Arc::new(Mutex::new(()))));
        Gpu {
            device,
            queue,
            info,
            limits,
            layouts,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            dummies,
            dummy_uniform,
            blocking: Mutex::new(Blocking::default()),
            sentinel_fill: cfg!(debug_assertions).into(),
            ops: Mutex::new(HashMap::new()),
            gl,
        }
    }

    /// Whether this device takes the bounded path: GL. wgpu-hal's GL backend serialises every GL
    /// call of a device through one context lock and panics in a thread that waits 6 s for it
    /// (`CONTEXT_LOCK_TIMEOUT_SECS`); `Queue::submit` holds it while it replays a command
    /// buffer, and llvmpipe runs each dispatch to completion inside that replay. So on GL:
    ///
    /// - the planners cap the work of one dispatch (`Caps::dispatch_work`), and the blocking
    ///   calls submit one dispatch at a time and wait for it ([`Gpu::submit_passes`]): the
    ///   crate's own work holds the context for one bounded dispatch at a time;
    /// - every GL call of the crate's own takes [`Gpu::gl_guard`] first, so a thread of the
    ///   crate waits for another in a lock of the crate's, without a time-out, and reaches
    ///   wgpu-hal's lock only when no other call of the crate holds it.
    ///
    /// Other backends record every pass into one command buffer and submit once, as before.
    /// docs/gl-context.md has the measurements.
    pub(crate) fn bounded_submits(&self) -> bool {
        self.info.backend == wgpu::Backend::Gl
    }

    /// On GL, the crate's lock around its own GL calls (see [`Gpu::bounded_submits`]); `None`
    /// elsewhere. Taken for a leaf call only (a buffer's creation, a submit and its wait, a
    /// pipeline build, a map), never while it is already held.
    pub(crate) fn gl_guard(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        self.gl.guard()
    }

    /// The lock behind [`Gpu::gl_guard`], for ops to keep.
    pub(crate) fn gl_lock(&self) -> GlLock {
        self.gl.clone()
    }

    /// Creates a buffer under [`Gpu::gl_guard`].
    pub(crate) fn create_buffer(&self, desc: &wgpu::BufferDescriptor<'_>) -> wgpu::Buffer {
        let _gl = self.gl_guard();
        self.device.create_buffer(desc)
    }

    /// Creates a buffer with contents under [`Gpu::gl_guard`].
    pub(crate) fn create_buffer_init(
        &self,
        desc: &wgpu::util::BufferInitDescriptor<'_>,
    ) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        let _gl = self.gl_guard();
        self.device.create_buffer_init(desc)
    }

    /// `Queue::write_buffer` under [`Gpu::gl_guard`] (it creates a staging buffer).
    pub(crate) fn write_buffer(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        let _gl = self.gl_guard();
        self.queue.write_buffer(buffer, offset, bytes);
    }

    /// Drops `value` (buffers, query sets; not ops, which take the lock themselves) under
    /// [`Gpu::gl_guard`]: on GL, destroying a buffer is a GL call.
    pub(crate) fn drop_guarded<T>(&self, value: T) {
        let _gl = self.gl_guard();
        drop(value);
    }

    /// Whether the blocking calls write their inputs into and read their outputs from the
    /// kernels' own buffers, mapped ([`unified_memory`] and `MAPPABLE_PRIMARY_BUFFERS` on the
    /// device).
    pub(crate) fn maps_primary(&self) -> bool {
        unified_memory(self.info.device_type)
            && self
                .device
                .features()
                .contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS)
    }

    /// The adapter, backend, device type and optional features in use.
    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// The wgpu device (for recording ops into your own encoders).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Whether the blocking calls fill their (reused) output buffers with the sentinel
    /// ([`SENTINEL_BITS`](crate::SENTINEL_BITS)) before each run, so that an entry a kernel
    /// leaves unwritten shows as that NaN payload. Off, the buffers are not touched before the
    /// run: every kernel writes every entry of its output, which the test suites check with
    /// this on (in every build). On by default in debug builds; the sentinel is an upload from
    /// the host. Ops recorded into your own encoder write into your buffers and are not
    /// affected.
    pub fn fill_outputs_with_sentinel(&self, on: bool) {
        self.sentinel_fill
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the subgroup kernels can run here.
    pub fn has_subgroups(&self) -> bool {
        self.info.features.contains(wgpu::Features::SUBGROUP)
    }

    /// The bind-group and pipeline layouts of `layout`; an error where the device lacks the
    /// storage buffers it needs.
    pub(crate) fn layout(
        &self,
        layout: Layout,
    ) -> Result<&(wgpu::BindGroupLayout, wgpu::PipelineLayout), Error> {
        self.layouts[layout as usize].as_ref().ok_or_else(|| {
            Error::Limit(format!(
                "the {} layout needs {} storage buffers per shader stage; this device has {}",
                layout.label(),
                layout.storage_bindings(),
                self.limits.max_storage_buffers_per_shader_stage
            ))
        })
    }

    /// The op cached under `(T, key)`, made by `make` on first use: the blocking calls reuse
    /// what they prepared. At most 32 ops are kept (the cache empties when full; each op
    /// destroys its buffers under the GL lock when its last user drops it).
    pub(crate) fn cached_op<T: std::any::Any + Send + Sync>(
        &self,
        key: [u64; 6],
        make: impl FnOnce() -> Result<T, Error>,
    ) -> Result<Arc<T>, Error> {
        let mut ops = lock(&self.ops);
        let key = (std::any::TypeId::of::<T>(), key);
        if let Some(op) = ops.get(&key).and_then(|op| op.clone().downcast::<T>().ok()) {
            return Ok(op);
        }
        let op = Arc::new(make()?);
        if ops.len() >= 32 {
            ops.clear();
        }
        ops.insert(key, op.clone());
        Ok(op)
    }
}
