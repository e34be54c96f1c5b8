//! WGSL modules, the bind-group layouts they bind against, and the pipeline cache.

use super::device::{Gpu, lock};
use super::shaders;
use crate::error::Error;

/// A WGSL module: which files it is made of (`shaders::source`) and the layout its entry
/// points bind against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Module {
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
    /// `common + logsumexp + logsumexp_words + logsumexp_out + logsumexp_axes` (the `axes`
    /// layout): reductions over any axes of an N-d array.
    LogsumexpAxes,
    /// `LogsumexpAxes` with the input read as vec4 words, and `logsumexp_axes_vec4`.
    LogsumexpAxesVec4,
    /// `common + likelihood + gmm + gradients` (the `likelihood` layout).
    Likelihood,
    /// The same module with the wide likelihood layout (a second read-write storage binding,
    /// 6): five storage buffers, where the device allows them.
    LikelihoodWide,
    /// `common + linear + linear_words` (the `linear` layout): fused linear cross-entropy.
    Linear,
    /// `common + linear + linear_vec4 + linear_vec4_dots`: its operands read as 16-byte words.
    LinearVec4,
    /// `LinearVec4` with `linear_vec4_dots_subgroup` (subgroups of at least 8 lanes).
    LinearVec4Subgroup,
    /// `bandwidth_vec4` (the likelihood layout): the yardsticks with 16-byte words.
    #[cfg_attr(not(feature = "bench-tools"), allow(dead_code))]
    BandwidthVec4,
}

impl Module {
    /// The files of the module, concatenated, and its label.
    fn source(self) -> (&'static str, String) {
        match self {
            Module::Logsumexp => ("logsumexp", shaders::logsumexp_module()),
            Module::LogsumexpSubgroup => {
                ("logsumexp_subgroup", shaders::logsumexp_subgroup_module())
            }
            Module::LogsumexpVec4 => ("logsumexp_vec4", shaders::logsumexp_vec4_module()),
            Module::LogsumexpVec4Subgroup => (
                "logsumexp_vec4_subgroup",
                shaders::logsumexp_vec4_subgroup_module(),
            ),
            Module::LogsumexpVec4Out => {
                ("logsumexp_vec4_out", shaders::logsumexp_vec4_out_module())
            }
            Module::LogsumexpVec4SubgroupOut => (
                "logsumexp_vec4_subgroup_out",
                shaders::logsumexp_vec4_subgroup_out_module(),
            ),
            Module::LogsumexpAxes => ("logsumexp_axes", shaders::logsumexp_axes_module()),
            Module::LogsumexpAxesVec4 => {
                ("logsumexp_axes_vec4", shaders::logsumexp_axes_vec4_module())
            }
            Module::Likelihood | Module::LikelihoodWide => {
                ("likelihood", shaders::likelihood_module())
            }
            Module::BandwidthVec4 => ("bandwidth_vec4", shaders::bandwidth_vec4_module()),
            Module::Linear => ("linear", shaders::linear_module()),
            Module::LinearVec4 => ("linear_vec4", shaders::linear_vec4_module()),
            Module::LinearVec4Subgroup => (
                "linear_vec4_subgroup",
                shaders::linear_vec4_subgroup_module(),
            ),
        }
    }

    /// The layout its entry points bind against.
    pub fn layout(self) -> Layout {
        match self {
            Module::Logsumexp
            | Module::LogsumexpSubgroup
            | Module::LogsumexpVec4
            | Module::LogsumexpVec4Subgroup
            | Module::LogsumexpVec4Out
            | Module::LogsumexpVec4SubgroupOut => Layout::Rows,
            Module::LogsumexpAxes | Module::LogsumexpAxesVec4 => Layout::Axes,
            Module::Likelihood | Module::BandwidthVec4 => Layout::Likelihood,
            Module::LikelihoodWide => Layout::LikelihoodWide,
            Module::Linear | Module::LinearVec4 | Module::LinearVec4Subgroup => Layout::Linear,
        }
    }

    /// The module whose source a pipeline is built from (the wide layout's pipelines come from
    /// the likelihood module).
    fn compiled(self) -> Module {
        match self {
            Module::LikelihoodWide => Module::Likelihood,
            m => m,
        }
    }

    /// The override constants of `key` that this module declares.
    fn constants(self, key: &PipelineKey) -> Vec<(&'static str, f64)> {
        let mut c = vec![("OP", f64::from(key.op)), ("WG", f64::from(key.wg))];
        match self {
            Module::BandwidthVec4 => {}
            Module::Linear => c.push(("IN_F16", f64::from(u8::from(key.in_f16)))),
            Module::LinearVec4 | Module::LinearVec4Subgroup => {
                c.push(("IN_F16", f64::from(u8::from(key.in_f16))));
                c.push(("QL", f64::from(key.vec.max(1))));
            }
            Module::Likelihood | Module::LikelihoodWide => {
                c.push(("IN_F16", f64::from(u8::from(key.in_f16))));
                c.push(("REDUCE", f64::from(key.reduce)));
                c.push(("GMM_DIMS", f64::from(key.dims)));
            }
            rows => {
                c.push(("IN_F16", f64::from(u8::from(key.in_f16))));
                c.push(("ROW_COLS", f64::from(key.dims)));
                c.push(("OUT_F16", f64::from(u8::from(key.out_f16))));
                if !matches!(
                    rows,
                    Module::Logsumexp | Module::LogsumexpSubgroup | Module::LogsumexpAxes
                ) {
                    c.push(("VEC", f64::from(key.vec)));
                }
                if matches!(rows, Module::LogsumexpAxes | Module::LogsumexpAxesVec4) {
                    c.push(("MASKED", f64::from(key.reduce)));
                }
                if matches!(
                    rows,
                    Module::LogsumexpVec4Subgroup | Module::LogsumexpVec4SubgroupOut
                ) {
                    c.push(("LANES", f64::from(key.lanes)));
                }
            }
        }
        c
    }
}

/// What one binding of a layout holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// A uniform block of at least this many bytes.
    Uniform(u64),
    /// Read-only storage.
    Read,
    /// Read-write storage.
    Write,
}

/// The bind-group layouts: binding 0 is each one's uniform parameter block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Layout {
    /// Params; the input (read); the output, the states (read-write).
    Rows = 0,
    /// LlParams; a, b, c (read); out (read-write); a uniform window (binding 5).
    Likelihood = 1,
    /// `Likelihood` plus binding 6 (read-write), where the device has five storage buffers.
    LikelihoodWide = 2,
    /// `Rows` plus binding 4, the folded dimensions of an N-d op (uniform), and binding 5, its
    /// `where=` mask (read).
    Axes = 3,
    /// LinParams; hidden, weight, bias, targets, class weights (read); the per-token states and
    /// the output (read-write): six storage buffers, within WebGPU's default of eight.
    Linear = 4,
}

impl Layout {
    pub const COUNT: usize = 5;
    pub const ALL: [Layout; Layout::COUNT] = [
        Layout::Rows,
        Layout::Likelihood,
        Layout::LikelihoodWide,
        Layout::Axes,
        Layout::Linear,
    ];

    /// Bindings 0, 1, … in order.
    pub fn bindings(self) -> &'static [Binding] {
        const PARAMS: u64 = std::mem::size_of::<shaders::Params>() as u64;
        const LL_PARAMS: u64 = std::mem::size_of::<shaders::LlParams>() as u64;
        const UNIFORM: u64 = shaders::GMM_UNIFORM_BYTES;
        const AXES: u64 = std::mem::size_of::<shaders::AxesParams>() as u64;
        const LIN: u64 = std::mem::size_of::<shaders::LinParams>() as u64;
        use Binding::*;
        match self {
            Layout::Rows => &[Uniform(PARAMS), Read, Write, Write],
            Layout::Axes => &[Uniform(PARAMS), Read, Write, Write, Uniform(AXES), Read],
            Layout::Linear => &[Uniform(LIN), Read, Read, Read, Read, Read, Write, Write],
            Layout::Likelihood => &[
                Uniform(LL_PARAMS),
                Read,
                Read,
                Read,
                Write,
                Uniform(UNIFORM),
            ],
            Layout::LikelihoodWide => &[
                Uniform(LL_PARAMS),
                Read,
                Read,
                Read,
                Write,
                Uniform(UNIFORM),
                Write,
            ],
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Layout::Rows => "logdomain rows",
            Layout::Likelihood => "logdomain likelihood",
            Layout::LikelihoodWide => "logdomain likelihood wide",
            Layout::Axes => "logdomain axes",
            Layout::Linear => "logdomain linear",
        }
    }

    /// Storage bindings of the layout.
    pub fn storage_bindings(self) -> usize {
        self.bindings()
            .iter()
            .filter(|b| !matches!(b, Binding::Uniform(_)))
            .count()
    }

    /// Which unused-binding buffer binding `binding` gets: 0 for read-only storage, then one
    /// per read-write binding in order (1, 2); `None` for a uniform.
    pub fn dummy(self, binding: usize) -> Option<usize> {
        let b = self.bindings();
        match b[binding] {
            Binding::Uniform(_) => None,
            Binding::Read => Some(0),
            Binding::Write => Some(
                1 + b[..binding]
                    .iter()
                    .filter(|k| **k == Binding::Write)
                    .count(),
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    pub module: Module,
    pub entry: &'static str,
    /// The `OP` override.
    pub op: u32,
    /// The `WG` override.
    pub wg: u32,
    /// The `REDUCE` override of the likelihood module; `MASKED` (0 or 1) of the N-d log-sum-exp
    /// modules.
    pub reduce: u32,
    /// A length the pipeline is specialised for (0 = not specialised): the `GMM_DIMS`
    /// override of the likelihood module, the `ROW_COLS` override of the log-sum-exp modules.
    pub dims: u32,
    /// The `IN_F16` override: the input (binding 1 of either module) holds f16 entries.
    pub in_f16: bool,
    /// The `OUT_F16` override (log-sum-exp modules): the output holds f16 entries.
    pub out_f16: bool,
    /// The `VEC` and `LANES` overrides of the vec4 entry points (0 elsewhere); `VEC` is the
    /// `QL` override (words of dims a lane) of the linear module's vec4 form.
    pub vec: u32,
    pub lanes: u32,
}

impl PipelineKey {
    /// A key of the likelihood module (workgroups of `LL_WG`), f32 input, not specialised.
    pub fn likelihood(entry: &'static str, op: u32, reduce: u32) -> PipelineKey {
        PipelineKey {
            module: Module::Likelihood,
            entry,
            op,
            wg: super::passes::LL_WG,
            reduce,
            dims: 0,
            in_f16: false,
            out_f16: false,
            vec: 0,
            lanes: 0,
        }
    }
}

impl Gpu {
    /// The pipeline for an entry point and its override constants, built on first use and
    /// cached: later calls compile nothing.
    pub(crate) fn pipeline(&self, key: PipelineKey) -> Result<wgpu::ComputePipeline, Error> {
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = lock(&self.modules)
            .entry(key.module.compiled())
            .or_insert_with(|| {
                let (label, source) = key.module.source();
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
        let constants = key.module.constants(&key);
        let layout = &self.layout(key.module.layout())?.1;
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
}
