//! The device, its description, cached pipelines and the one readback helper.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::logsumexp::{InputFormat, OutputFormat, RowFn, RowOp, RowsLayout, Strategy};
use crate::reference::logsumexp::LseState;
use crate::shaders;

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

/// Which WGSL module (and bind-group layout) a pipeline comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    /// `common + logsumexp` (the `rows` layout).
    Logsumexp,
    /// `common + logsumexp + logsumexp_subgroup`.
    LogsumexpSubgroup,
    /// `common + logsumexp + logsumexp_vec4`: the input read as vec4 words.
    LogsumexpVec4,
    /// `common + logsumexp + logsumexp_vec4 + logsumexp_vec4_subgroup`.
    LogsumexpVec4Subgroup,
    /// `LogsumexpVec4` with the output bound as vec4 words (`logsumexp_out_vec4`).
    LogsumexpVec4Out,
    /// `LogsumexpVec4Subgroup` with the output bound as vec4 words.
    LogsumexpVec4SubgroupOut,
    /// `common + likelihood + gmm + gradients` (the `likelihood` layout).
    Likelihood,
    /// The same module with the wide likelihood layout (a second read-write storage binding,
    /// 6): five storage buffers, where the device allows them.
    LikelihoodWide,
    /// `bandwidth_vec4` (the likelihood layout): the yardsticks with 16-byte words.
    BandwidthVec4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    pub family: Family,
    pub entry: &'static str,
    /// The `OP` override.
    pub op: u32,
    /// The `WG` override.
    pub wg: u32,
    /// The `REDUCE` override (likelihood family only).
    pub reduce: u32,
    /// A length the pipeline is specialised for (0 = not specialised): the `GMM_DIMS`
    /// override of the likelihood family, the `ROW_COLS` override of the log-sum-exp family.
    pub dims: u32,
    /// The `IN_F16` override: the input (binding 1 of either module) holds f16 entries.
    pub in_f16: bool,
    /// The `OUT_F16` override (log-sum-exp family): the output holds f16 entries.
    pub out_f16: bool,
    /// The `VEC` and `LANES` overrides of the vec4 entry points (0 elsewhere).
    pub vec: u32,
    pub lanes: u32,
}

impl PipelineKey {
    /// A key of the log-sum-exp family; `row_cols` is the `ROW_COLS` override, `(in_f16,
    /// out_f16)` the formats of the input and the output.
    pub fn rows(
        entry: &'static str,
        op: u32,
        wg: u32,
        (in_f16, out_f16): (bool, bool),
        row_cols: u32,
    ) -> PipelineKey {
        let family = match entry {
            "row_subgroup" => Family::LogsumexpSubgroup,
            "row_workgroup_vec4" | "row_thread_vec4" => Family::LogsumexpVec4,
            "row_lanes_vec4" => Family::LogsumexpVec4Subgroup,
            _ => Family::Logsumexp,
        };
        PipelineKey {
            family,
            entry,
            op,
            wg,
            reduce: 0,
            dims: row_cols,
            in_f16,
            out_f16,
            vec: 0,
            lanes: 0,
        }
    }

    /// The key of a vec4 entry point of the log-sum-exp family, with its `VEC` and `LANES`;
    /// `out4`: its module's output is bound as vec4 words (16-byte stores).
    pub fn rows_vec4(self, vec: u32, lanes: u32, out4: bool) -> PipelineKey {
        let family = match (self.family, out4) {
            (Family::LogsumexpVec4, true) => Family::LogsumexpVec4Out,
            (Family::LogsumexpVec4Subgroup, true) => Family::LogsumexpVec4SubgroupOut,
            (f, _) => f,
        };
        PipelineKey {
            family,
            vec,
            lanes,
            ..self
        }
    }
}

/// Reused buffers and prepared ops of the blocking API.
#[derive(Default)]
struct Blocking {
    input: Option<wgpu::Buffer>,
    output: Option<wgpu::Buffer>,
    readback: Option<wgpu::Buffer>,
    /// Keyed by function, shape, and the input's and the output's formats.
    ops: HashMap<(RowFn, usize, usize, InputFormat, OutputFormat), Arc<RowOp>>,
    /// Reused input and output buffers of the blocking losses and mixtures.
    loss_inputs: Vec<Option<wgpu::Buffer>>,
    loss_output: Option<wgpu::Buffer>,
    /// Timestamp queries and the buffer they resolve into, for `time_passes`.
    timestamps: Option<(wgpu::QuerySet, wgpu::Buffer)>,
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
    pub(crate) bind_group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    /// The likelihood family's layout: uniform params, three read-only inputs, one output.
    pub(crate) ll_layout: wgpu::BindGroupLayout,
    ll_pipeline_layout: wgpu::PipelineLayout,
    /// The likelihood layout plus binding 6 (read-write storage), where the device has five
    /// storage buffers per stage.
    pub(crate) ll_wide_layout: Option<wgpu::BindGroupLayout>,
    ll_wide_pipeline_layout: Option<wgpu::PipelineLayout>,
    modules: Mutex<HashMap<Family, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// Bound where a kernel's layout has a binding it does not use: one per storage binding
    /// (input, output, states), since a read-only and a read-write use of one buffer conflict.
    pub(crate) dummies: [wgpu::Buffer; 3],
    /// Bound as the likelihood layout's uniform window where a kernel does not use it.
    pub(crate) dummy_uniform: wgpu::Buffer,
    blocking: Mutex<Blocking>,
    /// Held around every GL call of the crate's own on a GL device; see [`Gpu::gl_guard`].
    gl: GlLock,
}

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

/// One compute dispatch, bound and sized: what the crate's recorders produce.
pub(crate) struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    pub group: wgpu::BindGroup,
    /// Workgroups in x and y (`fold_groups`).
    pub size: (u32, u32),
}

/// The dispatches of one compute pass, and the timestamp queries (first, first + 1) that its
/// beginning and end write.
pub(crate) struct PassRecord<'a> {
    pub label: &'static str,
    pub dispatches: Vec<Dispatch>,
    pub timestamps: Option<(&'a wgpu::QuerySet, u32)>,
}

impl PassRecord<'_> {
    /// Records the pass into `encoder`: one compute pass, every dispatch in order.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        self.record_range(encoder, 0..self.dispatches.len());
    }

    /// Records dispatches `range` as one compute pass, with the beginning timestamp only if the
    /// range starts the pass and the end timestamp only if it ends it.
    fn record_range(&self, encoder: &mut wgpu::CommandEncoder, range: std::ops::Range<usize>) {
        let n = self.dispatches.len();
        let (begins, ends) = (range.start == 0, range.end == n);
        // wgpu rejects timestamp writes with neither index: a middle range writes none.
        let timestamp_writes =
            self.timestamps
                .filter(|_| begins || ends)
                .map(|(query_set, first)| wgpu::ComputePassTimestampWrites {
                    query_set,
                    beginning_of_pass_write_index: begins.then_some(first),
                    end_of_pass_write_index: ends.then_some(first + 1),
                });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(self.label),
            timestamp_writes,
        });
        for d in &self.dispatches[range] {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.group, &[]);
            pass.dispatch_workgroups(d.size.0, d.size.1, 1);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic in another thread cannot leave these caches half-written in a harmful way.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Picks an adapter the wgpu way and creates a device (blocking). Honours `WGPU_BACKEND`
    /// (e.g. `vulkan`, `gl`), `WGPU_ADAPTER_NAME` (a substring of the adapter's name) and
    /// `WGPU_POWER_PREF` (`low`, `high`). The device gets the adapter's own limits and the
    /// optional features in [`OPTIONAL_FEATURES`] that the adapter has.
    pub fn new() -> Result<Gpu, Error> {
        pollster::block_on(Self::new_async())
    }

    /// The async form of [`Gpu::new`].
    pub async fn new_async() -> Result<Gpu, Error> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(want) => {
                let want = want.to_lowercase();
                let adapters = instance.enumerate_adapters(backends).await;
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want))
                    .ok_or_else(|| {
                        Error::NoAdapter(format!(
                            "WGPU_ADAPTER_NAME={want:?} matches none of {names:?}"
                        ))
                    })?
            }
            Err(_) => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env().unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    Error::NoAdapter(format!(
                        "{e}; WGPU_BACKEND={:?}",
                        std::env::var("WGPU_BACKEND").ok()
                    ))
                })?,
        };
        let features = adapter.features() & OPTIONAL_FEATURES;
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

    /// Wraps a device an application already owns (a renderer's). Its limits and features are
    /// used as they are: subgroup kernels run only if the device was created with
    /// `Features::SUBGROUP`.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        let adapter = device.adapter_info();
        let features = device.features();
        let info = GpuInfo {
            name: adapter.name.clone(),
            backend: adapter.backend,
            device_type: adapter.device_type,
            driver: format!("{} {}", adapter.driver, adapter.driver_info)
                .trim()
                .to_string(),
            features: features & OPTIONAL_FEATURES,
            subgroup_sizes: (adapter.subgroup_min_size, adapter.subgroup_max_size),
        };
        let limits = device.limits();
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let uniform = |binding, size: u64| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: wgpu::BufferSize::new(size),
            },
            count: None,
        };
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("logdomain rows"),
            entries: &[
                uniform(0, std::mem::size_of::<shaders::Params>() as u64),
                storage(1, true),
                storage(2, false),
                storage(3, false),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("logdomain rows"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let ll_entries = [
            uniform(0, std::mem::size_of::<shaders::LlParams>() as u64),
            storage(1, true),
            storage(2, true),
            storage(3, true),
            storage(4, false),
            uniform(5, shaders::GMM_UNIFORM_BYTES),
        ];
        let ll_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("logdomain likelihood"),
            entries: &ll_entries,
        });
        let ll_wide_layout = (limits.max_storage_buffers_per_shader_stage >= 5).then(|| {
            let mut entries = ll_entries.to_vec();
            entries.push(storage(6, false));
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("logdomain likelihood wide"),
                entries: &entries,
            })
        });
        let ll_wide_pipeline_layout = ll_wide_layout.as_ref().map(|l| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("logdomain likelihood wide"),
                bind_group_layouts: &[Some(l)],
                immediate_size: 0,
            })
        });
        let dummy_uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused uniform"),
            size: shaders::GMM_UNIFORM_BYTES,
            usage: wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        });
        let ll_pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("logdomain likelihood"),
            bind_group_layouts: &[Some(&ll_layout)],
            immediate_size: 0,
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
            bind_group_layout,
            pipeline_layout,
            ll_layout,
            ll_pipeline_layout,
            ll_wide_layout,
            ll_wide_pipeline_layout,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            dummies,
            dummy_uniform,
            blocking: Mutex::new(Blocking::default()),
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

    /// Submits one command buffer and waits for the device, under [`Gpu::gl_guard`].
    fn submit_and_wait(&self, commands: wgpu::CommandBuffer) -> Result<(), Error> {
        let _gl = self.gl_guard();
        self.queue.submit([commands]);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(e.to_string()))
    }

    /// The blocking calls' way to run recorded passes. Elsewhere than on GL, records them into
    /// `encoder` (submitted later with the readback). On GL ([`Gpu::bounded_submits`]): submits
    /// what `encoder` holds, then each dispatch in a command buffer of its own, waiting for
    /// each; `encoder` is left empty for what follows.
    pub(crate) fn submit_passes(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        passes: &[PassRecord<'_>],
    ) -> Result<(), Error> {
        if !self.bounded_submits() {
            for p in passes {
                p.record(encoder);
            }
            return Ok(());
        }
        let fresh = || self.device.create_command_encoder(&Default::default());
        self.submit_and_wait(std::mem::replace(encoder, fresh()).finish())?;
        for p in passes {
            // An empty pass still writes its timestamps.
            let n = p.dispatches.len();
            for i in 0..n.max(1) {
                let mut e = fresh();
                p.record_range(&mut e, i.min(n)..(i + 1).min(n));
                self.submit_and_wait(e.finish())?;
            }
        }
        Ok(())
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

    /// Whether the subgroup kernels can run here.
    pub fn has_subgroups(&self) -> bool {
        self.info.features.contains(wgpu::Features::SUBGROUP)
    }

    /// Every explicit strategy this device can run (`Strategy::Auto` aside), for benchmarks and
    /// tests that compare them.
    pub fn strategies(&self) -> Vec<Strategy> {
        let mut all = vec![Strategy::ThreadPerRow, Strategy::ThreadVec4];
        if self.has_subgroups() {
            all.push(Strategy::SubgroupPerRow);
        }
        all.push(Strategy::WorkgroupPerRow);
        if self.has_subgroups() {
            all.push(Strategy::SubgroupVec4);
        }
        all.extend([
            Strategy::WorkgroupVec4,
            Strategy::SplitRow,
            Strategy::SplitRowThreads,
        ]);
        all
    }

    /// The pipeline for an entry point and its override constants, built on first use and
    /// cached: later calls compile nothing.
    pub(crate) fn pipeline(&self, key: PipelineKey) -> Result<wgpu::ComputePipeline, Error> {
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        // The wide layout's pipelines come from the likelihood module too.
        let module_family = match key.family {
            Family::LikelihoodWide => Family::Likelihood,
            f => f,
        };
        let module = lock(&self.modules)
            .entry(module_family)
            .or_insert_with(|| {
                let (label, source) = match key.family {
                    Family::Logsumexp => ("logsumexp", shaders::logsumexp_module()),
                    Family::LogsumexpSubgroup => {
                        ("logsumexp_subgroup", shaders::logsumexp_subgroup_module())
                    }
                    Family::LogsumexpVec4 => ("logsumexp_vec4", shaders::logsumexp_vec4_module()),
                    Family::LogsumexpVec4Subgroup => (
                        "logsumexp_vec4_subgroup",
                        shaders::logsumexp_vec4_subgroup_module(),
                    ),
                    Family::LogsumexpVec4Out => {
                        ("logsumexp_vec4_out", shaders::logsumexp_vec4_out_module())
                    }
                    Family::LogsumexpVec4SubgroupOut => (
                        "logsumexp_vec4_subgroup_out",
                        shaders::logsumexp_vec4_subgroup_out_module(),
                    ),
                    Family::Likelihood | Family::LikelihoodWide => {
                        ("likelihood", shaders::likelihood_module())
                    }
                    Family::BandwidthVec4 => ("bandwidth_vec4", shaders::bandwidth_vec4_module()),
                };
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                };
                // SAFETY: wgpu's `force_loop_bounding` adds a counter to every loop so that a
                // driver cannot treat an infinite loop as unreachable; the caller vouches that
                // no loop is infinite. Every loop of our WGSL has an audited form that
                // terminates (`shaders::LOOP_FORMS`, held by the `every_loop_has_an_audited_form`
                // test), and the host validates the parameters the bounds come from. Bounds
                // checks and division checks stay on. The counters cost: 76 -> 65 ms for the
                // mixture score on lavapipe, 0.37 -> 0.12 ms on an H200 (docs/performance.md).
                let checks = wgpu::ShaderRuntimeChecks {
                    force_loop_bounding: false,
                    ..wgpu::ShaderRuntimeChecks::checked()
                };
                unsafe { self.device.create_shader_module_trusted(desc, checks) }
            })
            .clone();
        let mut constants = vec![("OP", f64::from(key.op)), ("WG", f64::from(key.wg))];
        if key.family != Family::BandwidthVec4 {
            constants.push(("IN_F16", f64::from(u8::from(key.in_f16))));
        }
        let layout = match key.family {
            Family::Logsumexp
            | Family::LogsumexpSubgroup
            | Family::LogsumexpVec4
            | Family::LogsumexpVec4Subgroup
            | Family::LogsumexpVec4Out
            | Family::LogsumexpVec4SubgroupOut => {
                constants.push(("ROW_COLS", f64::from(key.dims)));
                constants.push(("OUT_F16", f64::from(u8::from(key.out_f16))));
                if matches!(
                    key.family,
                    Family::LogsumexpVec4
                        | Family::LogsumexpVec4Subgroup
                        | Family::LogsumexpVec4Out
                        | Family::LogsumexpVec4SubgroupOut
                ) {
                    constants.push(("VEC", f64::from(key.vec)));
                }
                if matches!(
                    key.family,
                    Family::LogsumexpVec4Subgroup | Family::LogsumexpVec4SubgroupOut
                ) {
                    constants.push(("LANES", f64::from(key.lanes)));
                }
                &self.pipeline_layout
            }
            Family::BandwidthVec4 => &self.ll_pipeline_layout,
            Family::Likelihood | Family::LikelihoodWide => {
                constants.push(("REDUCE", f64::from(key.reduce)));
                constants.push(("GMM_DIMS", f64::from(key.dims)));
                if key.family == Family::Likelihood {
                    &self.ll_pipeline_layout
                } else {
                    self.ll_wide_pipeline_layout.as_ref().ok_or_else(|| {
                        Error::Limit(format!(
                            "{} needs 5 storage buffers per shader stage; this device has {}",
                            key.entry, self.limits.max_storage_buffers_per_shader_stage
                        ))
                    })?
                }
            }
        };
        let gl = self.gl_guard();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(key.entry),
                layout: Some(layout),
                module: &module,
                entry_point: Some(key.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        drop(gl);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("building pipeline {}: {e}", key.entry)));
        }
        lock(&self.pipelines).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Copies `bytes` bytes of f32 from the start of `buffer` (which needs `COPY_SRC`) to the
    /// host, through a reused staging buffer, and waits.
    pub fn read_f32(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>, Error> {
        let mut blocking = lock(&self.blocking);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.read_back(&mut blocking, &mut encoder, buffer, bytes)
    }

    /// The blocking path of the likelihood family: uploads host inputs into reused buffers,
    /// records `program`, and reads its `out_len` values back.
    pub(crate) fn run_program(
        &self,
        program: &crate::likelihood::Program,
        inputs: &[&[u8]],
        out_len: usize,
    ) -> Result<Vec<f32>, Error> {
        Ok(self.run_program_with(program, inputs, out_len, &[])?.0)
    }

    /// `run_program` for ops with more outputs: `extra[i]` f32 values are written by the
    /// program into its input `inputs.len() + i`, and read back after the main output.
    pub(crate) fn run_program_with(
        &self,
        program: &crate::likelihood::Program,
        inputs: &[&[u8]],
        out_len: usize,
        extra: &[usize],
    ) -> Result<(Vec<f32>, Vec<Vec<f32>>), Error> {
        let mut blocking = lock(&self.blocking);
        let slots = inputs.len() + extra.len();
        if blocking.loss_inputs.len() < slots {
            blocking.loss_inputs.resize(slots, None);
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        let mut buffers = Vec::with_capacity(slots);
        for (i, bytes) in inputs.iter().enumerate() {
            let b = self.reuse(
                &mut blocking.loss_inputs[i],
                (bytes.len() as u64).max(4),
                usage,
                "logdomain loss input",
            )?;
            if !bytes.is_empty() {
                self.write_buffer(&b, 0, bytes);
            }
            buffers.push(b);
        }
        let mut encoder = self.device.create_command_encoder(&Default::default());
        // As in `run_rows`: outputs start as the sentinel in debug builds (the tests), so an
        // unwritten value shows, and zeroed in release builds.
        let mut fill = |b: &wgpu::Buffer, len: usize| {
            if len > 0 {
                if cfg!(debug_assertions) {
                    let fill = vec![shaders::SENTINEL_BITS; len];
                    self.write_buffer(b, 0, bytemuck::cast_slice(&fill));
                } else {
                    encoder.clear_buffer(b, 0, Some(len as u64 * 4));
                }
            }
        };
        for (i, &len) in extra.iter().enumerate() {
            let b = self.reuse(
                &mut blocking.loss_inputs[inputs.len() + i],
                (len as u64 * 4).max(4),
                usage,
                "logdomain gradient output",
            )?;
            fill(&b, len);
            buffers.push(b);
        }
        let out_bytes = out_len as u64 * 4;
        let output = self.reuse(
            &mut blocking.loss_output,
            out_bytes.max(4),
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            "logdomain loss output",
        )?;
        fill(&output, out_len);
        let refs: Vec<&wgpu::Buffer> = buffers.iter().collect();
        self.submit_program(&mut encoder, program, &refs, &output)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        let main = self.read_back(&mut blocking, &mut encoder, &output, out_bytes)?;
        let mut more = Vec::with_capacity(extra.len());
        for (b, &len) in buffers[inputs.len()..].iter().zip(extra) {
            more.push(self.read_back(&mut blocking, &mut encoder, b, len as u64 * 4)?);
        }
        Ok((main, more))
    }

    /// Runs `program` on resident input buffers into a fresh output of `out_len` values and
    /// reads them back (the fit's E-steps, on points uploaded once).
    pub(crate) fn run_resident(
        &self,
        program: &crate::likelihood::Program,
        inputs: &[&wgpu::Buffer],
        out_len: usize,
    ) -> Result<Vec<f32>, Error> {
        let output = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logdomain resident output"),
            size: (out_len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut blocking = lock(&self.blocking);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.submit_program(&mut encoder, program, inputs, &output)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        let out = self.read_back(&mut blocking, &mut encoder, &output, out_len as u64 * 4);
        self.drop_guarded(output);
        out
    }

    /// Checks the buffers, then runs every pass of `program` ([`Gpu::submit_passes`]).
    fn submit_program(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        program: &crate::likelihood::Program,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        program.check(inputs, output)?;
        let passes = program.pass_records(inputs, output, None)?;
        self.submit_passes(encoder, &passes)
    }

    /// The one readback path of the crate: submits `encoder` with a copy of the first `bytes`
    /// bytes of `buffer` into the reused staging buffer, waits, and returns them as `T`s.
    fn read_back<T: bytemuck::Pod>(
        &self,
        blocking: &mut Blocking,
        encoder: &mut wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<T>, Error> {
        let size = std::mem::size_of::<T>() as u64;
        if !bytes.is_multiple_of(size.max(4)) || bytes > buffer.size() {
            return Err(Error::Buffer(format!(
                "cannot read {bytes} bytes of {} from a buffer of {} bytes",
                std::any::type_name::<T>(),
                buffer.size()
            )));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::Buffer(
                "reading back needs BufferUsages::COPY_SRC".into(),
            ));
        }
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.reuse(
            &mut blocking.readback,
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            "logdomain readback",
        )?;
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let encoder = std::mem::replace(
            encoder,
            self.device.create_command_encoder(&Default::default()),
        );
        // Submit, map, wait, copy out and unmap: GL calls, one section under the crate's lock.
        let _gl = self.gl_guard();
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            let _ = tx.send(r);
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        rx.recv()
            .map_err(|e| Error::Gpu(e.to_string()))?
            .map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))?;
        let out = {
            let view = staging
                .get_mapped_range(..bytes)
                .map_err(|e| Error::Gpu(format!("mapped range: {e}")))?;
            bytemuck::pod_collect_to_vec::<u8, T>(&view)
        };
        staging.unmap();
        Ok(out)
    }

    /// A reused buffer of at least `bytes` bytes, grown to the next power of two.
    fn reuse(
        &self,
        slot: &mut Option<wgpu::Buffer>,
        bytes: u64,
        usage: wgpu::BufferUsages,
        label: &str,
    ) -> Result<wgpu::Buffer, Error> {
        if let Some(b) = slot.as_ref().filter(|b| b.size() >= bytes) {
            return Ok(b.clone());
        }
        let max = self.limits.max_buffer_size;
        if bytes > max {
            return Err(Error::Limit(format!(
                "{label} needs {bytes} bytes; max_buffer_size is {max}"
            )));
        }
        let size = bytes
            .max(256)
            .checked_next_power_of_two()
            .unwrap_or(bytes)
            .min(max);
        let b = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        });
        // The old buffer's last reference may go here: destroying it is a GL call.
        self.drop_guarded(slot.replace(b.clone()));
        Ok(b)
    }

    /// Runs a prepared op once on resident buffers and returns the GPU time of its compute pass,
    /// from timestamp queries; `None` where the device lacks `Features::TIMESTAMP_QUERY` (some
    /// GL drivers), in which case time the call on the host. On GL the dispatches are submitted
    /// one at a time (docs/gl-context.md) and the time spans the first to the last. Waits
    /// for the GPU.
    pub fn kernel_time(
        &self,
        op: &RowOp,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        if op.dispatches() == 0 {
            let timed = self.has_timestamps();
            return Ok(timed.then_some(std::time::Duration::ZERO));
        }
        self.time_passes(1, |queries| {
            Ok(op
                .op_pass(input, output, Some((queries, 0)))?
                .into_iter()
                .collect())
        })
    }

    fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The one timing path of the crate: `passes` returns compute passes that write `pairs`
    /// pairs of timestamps (begin and end of a pass, queries 2i and 2i + 1) into the given query
    /// set; this runs them ([`Gpu::submit_passes`]), waits, and returns the summed pass times,
    /// or `None` without `Features::TIMESTAMP_QUERY`. The query set and its resolve buffer are
    /// reused (grown on demand).
    pub(crate) fn time_passes(
        &self,
        pairs: u32,
        passes: impl for<'q> FnOnce(&'q wgpu::QuerySet) -> Result<Vec<PassRecord<'q>>, Error>,
    ) -> Result<Option<std::time::Duration>, Error> {
        if !self.has_timestamps() {
            return Ok(None);
        }
        let count = 2 * pairs.max(1);
        let mut blocking = lock(&self.blocking);
        if blocking
            .timestamps
            .as_ref()
            .is_some_and(|(q, _)| q.count() < count)
        {
            self.drop_guarded(blocking.timestamps.take());
        }
        let (queries, resolved) = blocking
            .timestamps
            .get_or_insert_with(|| {
                let _gl = self.gl_guard();
                let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("logdomain timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                });
                let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("logdomain timestamps"),
                    size: u64::from(count) * 8,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                (queries, resolved)
            })
            .clone();
        let mut encoder = self.device.create_command_encoder(&Default::default());
        let records = passes(&queries)?;
        self.submit_passes(&mut encoder, &records)?;
        drop(records);
        encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
        let ticks: Vec<u64> =
            self.read_back(&mut blocking, &mut encoder, &resolved, u64::from(count) * 8)?;
        let period = f64::from(self.queue.get_timestamp_period());
        let ns: f64 = ticks
            .chunks(2)
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period)
            .sum();
        Ok(Some(std::time::Duration::from_nanos(ns.round() as u64)))
    }

    /// Row-wise log-sum-exp of a row-major `rows × cols` matrix: `rows` values.
    /// SciPy ≥ 1.15 semantics (see the crate documentation).
    pub fn logsumexp(&self, x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
        self.run_rows(RowFn::Logsumexp, x, rows, cols)
    }

    /// Row-wise softmax: `rows * cols` values.
    pub fn softmax(&self, x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
        self.run_rows(RowFn::Softmax, x, rows, cols)
    }

    /// Row-wise log_softmax: `rows * cols` values.
    pub fn log_softmax(&self, x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
        self.run_rows(RowFn::LogSoftmax, x, rows, cols)
    }

    /// [`Gpu::logsumexp`] of f16 entries (`half::f16`), read as f16 on the GPU (half the bytes)
    /// and computed in f32: bit for bit `logsumexp` of the same values converted to f32.
    ///
    /// ```no_run
    /// use half::f16;
    /// let gpu = logdomain::Gpu::new()?;
    /// let x: Vec<f16> = [0.0f32, 1.0, 2.0].iter().map(|&v| f16::from_f32(v)).collect();
    /// let lse = gpu.logsumexp_f16(&x, 1, 3)?;
    /// assert_eq!(lse, gpu.logsumexp(&[0.0, 1.0, 2.0], 1, 3)?);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logsumexp_f16(
        &self,
        x: &[half::f16],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_as(RowFn::Logsumexp, Values::F16(x), rows, cols)
    }

    /// [`Gpu::softmax`] of f16 entries (f32 results).
    pub fn softmax_f16(
        &self,
        x: &[half::f16],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_as(RowFn::Softmax, Values::F16(x), rows, cols)
    }

    /// [`Gpu::log_softmax`] of f16 entries (f32 results).
    pub fn log_softmax_f16(
        &self,
        x: &[half::f16],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_as(RowFn::LogSoftmax, Values::F16(x), rows, cols)
    }

    /// Row-wise log-sum-exp in two parts, `(m, log1p(s))` per row: `2 * rows` values (see
    /// [`RowFn::LogsumexpParts`]).
    pub fn logsumexp_parts(&self, x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
        self.run_rows(RowFn::LogsumexpParts, x, rows, cols)
    }

    /// Each row's log-sum-exp as a state of the kernels' monoid ([`LseState`]: the max and the
    /// scaled sum of the others), for merging shards: states of column blocks of the same rows,
    /// computed on any number of dispatches, adapters or machines, combine with
    /// [`LseState::combine`] into the rows' log-sum-exp ([`LseState::logsumexp`]). A state is
    /// 12 bytes a row, so any distributed engine can carry it.
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let left = gpu.logsumexp_partial(&[0.0, 1.0], 1, 2)?;   // columns 0..2 of a row
    /// let right = gpu.logsumexp_partial(&[2.0, -3.0], 1, 2)?; // columns 2..4, elsewhere
    /// let lse = left[0].combine(right[0]).logsumexp();
    /// assert!((lse - gpu.logsumexp(&[0.0, 1.0, 2.0, -3.0], 1, 4)?[0]).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logsumexp_partial(
        &self,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<LseState>, Error> {
        let parts = self.run_rows(RowFn::LogsumexpParts, x, rows, cols)?;
        Ok(parts
            .chunks(2)
            .map(|p| LseState::from_parts(p[0], p[1]))
            .collect())
    }

    fn run_rows(
        &self,
        func: RowFn,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_as(func, Values::F32(x), rows, cols)
    }

    /// [`Gpu::softmax`] written as f16 (each value the f32 result rounded to nearest even):
    /// half the bytes written and read back.
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let p = gpu.softmax_to_f16(&[0.0, 0.0, 0.0, 0.0], 1, 4)?;
    /// assert_eq!(p, vec![half::f16::from_f32(0.25); 4]);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn softmax_to_f16(
        &self,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<half::f16>, Error> {
        self.run_rows_to_f16(RowFn::Softmax, Values::F32(x), rows, cols)
    }

    /// [`Gpu::log_softmax`] written as f16 (rounded to nearest even from the f32 result).
    pub fn log_softmax_to_f16(
        &self,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<half::f16>, Error> {
        self.run_rows_to_f16(RowFn::LogSoftmax, Values::F32(x), rows, cols)
    }

    fn run_rows_to_f16(
        &self,
        func: RowFn,
        x: Values<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<half::f16>, Error> {
        let words = self.run_rows_in(func, x, OutputFormat::F16, rows, cols)?;
        let mut out: Vec<half::f16> = words
            .iter()
            .flat_map(|w| {
                let b = w.to_bits();
                [b as u16, (b >> 16) as u16]
            })
            .map(half::f16::from_bits)
            .collect();
        out.truncate(func.output_len(rows, cols));
        Ok(out)
    }

    fn run_rows_as(
        &self,
        func: RowFn,
        x: Values<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_in(func, x, OutputFormat::F32, rows, cols)
    }

    /// The blocking path of the family: the output's words (f32 values, or pairs of f16
    /// entries as f32 bit patterns).
    fn run_rows_in(
        &self,
        func: RowFn,
        x: Values<'_>,
        out_format: OutputFormat,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        let (len, format, bytes) = x.upload();
        let expected = rows
            .checked_mul(cols)
            .ok_or_else(|| Error::Shape(format!("{rows} × {cols} overflows usize")))?;
        if len != expected {
            return Err(Error::InputLength {
                what: "x",
                expected,
                actual: len,
            });
        }
        let out_len = func.output_len(rows, cols);
        if out_len == 0 {
            return Ok(Vec::new());
        }
        let mut blocking = lock(&self.blocking);
        let key = (func, rows, cols, format, out_format);
        let op = match blocking.ops.get(&key) {
            Some(op) => op.clone(),
            None => {
                let layout = RowsLayout {
                    input_format: format,
                    output_format: out_format,
                    ..RowsLayout::contiguous(rows, cols)
                };
                let op = Arc::new(RowOp::new(self, func, layout, Strategy::Auto)?);
                if blocking.ops.len() >= 32 {
                    // Each op destroys its buffers under the GL lock itself (`RowOp`'s `Drop`).
                    blocking.ops.clear();
                }
                blocking.ops.insert(key, op.clone());
                op
            }
        };
        let in_bytes = bytes.len() as u64;
        let out_bytes = (out_len as u64 * out_format.bytes()).next_multiple_of(4);
        let input = self.reuse(
            &mut blocking.input,
            in_bytes.max(4),
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            "logdomain input",
        )?;
        let output = self.reuse(
            &mut blocking.output,
            out_bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            "logdomain output",
        )?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        if in_bytes > 0 {
            self.write_buffer(&input, 0, &bytes);
        }
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("logdomain blocking"),
            });
        // The output buffer is reused and holds earlier results. Debug builds (the tests) fill it
        // with the sentinel, so an entry a kernel failed to write shows; release builds zero it,
        // a memset, where the sentinel kernel would cost about as much as the op's own stores
        // on a software adapter.
        let mut passes = Vec::new();
        if cfg!(debug_assertions) {
            passes.extend(op.fill_pass(&output)?);
        } else {
            encoder.clear_buffer(&output, 0, Some(out_bytes));
        }
        passes.extend(op.op_pass(&input, &output, None)?);
        self.submit_passes(&mut encoder, &passes)?;
        drop(passes);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        self.read_back(&mut blocking, &mut encoder, &output, out_bytes)
    }
}

/// The host values of an op's main input, f32 or f16.
#[derive(Clone, Copy)]
pub(crate) enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl<'a> Values<'a> {
    /// The number of entries, their format, and the bytes to upload: whole 4-byte words, as
    /// kernels bind them (an odd count of f16 entries is padded with one zero entry, a copy
    /// only then).
    pub fn upload(self) -> (usize, InputFormat, std::borrow::Cow<'a, [u8]>) {
        use std::borrow::Cow;
        match self {
            Values::F32(v) => (
                v.len(),
                InputFormat::F32,
                Cow::Borrowed(bytemuck::cast_slice(v)),
            ),
            Values::F16(v) if v.len().is_multiple_of(2) => (
                v.len(),
                InputFormat::F16,
                Cow::Borrowed(bytemuck::cast_slice(v)),
            ),
            Values::F16(v) => {
                let mut words = v.to_vec();
                words.push(half::f16::ZERO);
                let bytes = bytemuck::cast_slice(&words).to_vec();
                (v.len(), InputFormat::F16, Cow::Owned(bytes))
            }
        }
    }
}
