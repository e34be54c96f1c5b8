//! The benches' bandwidth yardstick: a kernel that reads every word of a buffer once and does
//! nothing else (wrapping u32 sums per invocation: neighbouring invocations on neighbouring
//! words on GPUs, each invocation a run of consecutive words on software adapters), so that an
//! op's GB/s can be read as a fraction of what this adapter can read.
//! Kernel: `shaders/bandwidth.wgsl`; CPU mirror: [`crate::reference::bandwidth`].

use crate::engine::device::Gpu;
use crate::engine::geometry::{Caps, u32_of};
use crate::engine::op::Op;
use crate::engine::passes::{LlPass, groups_for, key, limit};
use crate::engine::pipelines::{Module, PipelineKey};
use crate::engine::program::{Bind, Program, Src, Step};
use crate::engine::shaders::LlParams;
use crate::error::Error;

/// Invocations of the probe: enough to fill a large GPU (132 multiprocessors × 2048), few
/// enough that each still reads a run of words.
const INVOCATIONS: u64 = 1 << 18;
/// Units (4-byte or 16-byte words) an invocation of the software adapters' yardsticks reads in
/// one run.
const RUN_WORDS: u64 = 256;

/// vec4 words each invocation of the vec4 yardsticks loads before it uses any (`UNROLL` in
/// `shaders/bandwidth_vec4.wgsl`).
pub const VEC4_UNROLL: usize = 4;

/// A read of `words` u32 words from byte 0 of a storage buffer, reduced per invocation
/// ([`ReadProbe::new`]), or copied word for word to the output ([`ReadProbe::copy`]).
///
/// ```no_run
/// use logdomain::{Gpu, ReadProbe};
/// let gpu = Gpu::new()?;
/// let words: Vec<u32> = (0..1_000_000).collect();
/// let total = gpu.read_probe(&words)?;
/// assert_eq!(total, logdomain::reference::bandwidth::read_sum(&words));
/// let probe = ReadProbe::new(&gpu, words.len())?;
/// assert!(probe.output_len() <= words.len());
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct ReadProbe {
    program: Program,
    output_len: usize,
    runs: bool,
}

impl ReadProbe {
    /// Prepares a read of `words` words (at most one storage binding).
    pub fn new(gpu: &Gpu, words: usize) -> Result<ReadProbe, Error> {
        Self::build(gpu, words, false, false)
    }

    /// Prepares the copy yardstick: each of `words` words read and written to the output at the
    /// same index (`words` words of output); on software adapters each invocation copies a run
    /// of consecutive words (twice as fast there), elsewhere neighbouring invocations copy
    /// neighbouring words.
    pub fn copy(gpu: &Gpu, words: usize) -> Result<ReadProbe, Error> {
        Self::build(gpu, words, true, false)
    }

    /// The read with 16-byte words (`shaders/bandwidth_vec4.wgsl`): each invocation loads
    /// [`VEC4_UNROLL`] vec4 words before it adds any. `words` must be a multiple of 4; the
    /// output holds 4 partial sums an invocation, which add up, wrapping, to the same total.
    pub fn read_vec4(gpu: &Gpu, words: usize) -> Result<ReadProbe, Error> {
        Self::build(gpu, words, false, true)
    }

    /// The copy with 16-byte words: each word read and written to the output at its own index
    /// (`words` words of output; `words` a multiple of 4).
    pub fn copy_vec4(gpu: &Gpu, words: usize) -> Result<ReadProbe, Error> {
        Self::build(gpu, words, true, true)
    }

    /// The probe of `words` words: the read (`copy` false) or the copy, in 4-byte words
    /// (`bandwidth.wgsl`) or 16-byte ones (`vec4`, `bandwidth_vec4.wgsl`).
    fn build(gpu: &Gpu, words: usize, copy: bool, vec4: bool) -> Result<ReadProbe, Error> {
        if vec4 && !words.is_multiple_of(4) {
            return Err(Error::Shape(format!(
                "the vec4 yardsticks read whole 16-byte words: {words} u32 words is not a \
                 multiple of 4"
            )));
        }
        let caps = Caps::of(gpu);
        let w = words as u64;
        limit("the probe's input", w * 4, &caps)?;
        // u32 words a unit the kernel loads.
        let per_unit: u64 = if vec4 { 4 } else { 1 };
        let units = w / per_unit;
        // Software adapters read in runs of RUN_WORDS units an invocation (sequential streams),
        // GPUs with the grid stride (coalesced).
        let runs = caps.cpu;
        let invocations = if runs {
            units.div_ceil(RUN_WORDS).max(1)
        } else {
            INVOCATIONS.min(units).max(1)
        };
        let (key, params) = if vec4 {
            (
                PipelineKey {
                    module: Module::BandwidthVec4,
                    ..key(
                        if runs {
                            "read_probe_vec4_runs"
                        } else {
                            "read_probe_vec4"
                        },
                        u32::from(copy),
                        0,
                    )
                },
                // bandwidth_vec4.wgsl's ProbeParams { words, slots } are LlParams' first two
                // fields.
                LlParams {
                    rows: u32_of(units, "vec4 words")?,
                    cols: invocations as u32,
                    ..LlParams::default()
                },
            )
        } else {
            (
                // Runs of consecutive words on software adapters (OP 2 copy, 3 read), the grid
                // stride elsewhere (OP 1 copy, 0 read): each adapter's faster pattern.
                key(
                    "read_probe",
                    match (copy, runs) {
                        (false, false) => 0,
                        (true, false) => 1,
                        (true, true) => 2,
                        (false, true) => 3,
                    },
                    0,
                ),
                LlParams {
                    rows: u32_of(units, "words")?,
                    slots: invocations as u32,
                    ..LlParams::default()
                },
            )
        };
        let passes = if w == 0 {
            Vec::new()
        } else {
            vec![LlPass {
                key,
                params,
                groups: groups_for(invocations)?,
                bind: [
                    Bind::whole(Src::Input(0)),
                    Bind::whole(Src::Dummy),
                    Bind::whole(Src::Dummy),
                    Bind::whole(Src::Output),
                ],
                uniform: None,
                extra: None,
            }]
        };
        let output_len = match (w, copy) {
            (0, _) => 0,
            (_, true) => words,
            // One partial sum a word of a unit, an invocation.
            (_, false) => (invocations * per_unit) as usize,
        };
        let program = Program::new(
            gpu,
            vec![Step::ll(passes)],
            None,
            &[],
            vec![w * 4],
            output_len as u64 * 4,
        )?;
        Ok(ReadProbe {
            program,
            output_len,
            runs,
        })
    }

    /// Whether each invocation reads a run of consecutive words (software adapters:
    /// `reference::bandwidth::read_probe_run_partial`) rather than every `invocations`-th word
    /// (GPUs: `read_probe_partial`, `read_probe_vec4_partial`).
    pub fn in_runs(&self) -> bool {
        self.runs
    }

    /// Number of u32 words written to the output (partial sums, or the copy).
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Records the read of `input` (from byte 0) into `output`'s first
    /// [`ReadProbe::output_len`] words.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[input], output)
    }

    /// Runs the read once on resident buffers and returns its GPU time (`None` without
    /// `Features::TIMESTAMP_QUERY`). Waits.
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.program.kernel_time(gpu, &[input], output)
    }
}

impl Gpu {
    /// The wrapping u32 sum of `words`, read on the GPU by the bandwidth probe (the partials
    /// added on the host): a check that the probe reads every word once.
    pub fn read_probe(&self, words: &[u32]) -> Result<u32, Error> {
        self.probe_sum(&ReadProbe::new(self, words.len())?, words)
    }

    /// [`Gpu::read_probe`] with the vec4 yardstick (`words.len()` a multiple of 4).
    pub fn read_probe_vec4(&self, words: &[u32]) -> Result<u32, Error> {
        self.probe_sum(&ReadProbe::read_vec4(self, words.len())?, words)
    }

    /// `words` copied on the GPU by the copy yardstick and read back: a check that it reads
    /// and writes every word once.
    pub fn copy_probe(&self, words: &[u32]) -> Result<Vec<u32>, Error> {
        self.probe_output(&ReadProbe::copy(self, words.len())?, words)
    }

    /// [`Gpu::copy_probe`] with the vec4 yardstick (`words.len()` a multiple of 4).
    pub fn copy_probe_vec4(&self, words: &[u32]) -> Result<Vec<u32>, Error> {
        self.probe_output(&ReadProbe::copy_vec4(self, words.len())?, words)
    }

    /// Runs `probe` on `words` (blocking) and returns its output words.
    fn probe_output(&self, probe: &ReadProbe, words: &[u32]) -> Result<Vec<u32>, Error> {
        let out = self.run_program(
            &probe.program,
            &[bytemuck::cast_slice(words)],
            probe.output_len,
        )?;
        Ok(out.iter().map(|v| v.to_bits()).collect())
    }

    /// Runs a read probe on `words` and adds its partials, wrapping.
    fn probe_sum(&self, probe: &ReadProbe, words: &[u32]) -> Result<u32, Error> {
        Ok(self
            .probe_output(probe, words)?
            .into_iter()
            .fold(0u32, u32::wrapping_add))
    }
}

crate::engine::op::lowered!(ReadProbe);

impl Op for ReadProbe {
    fn input_names(&self) -> Vec<&'static str> {
        vec!["words (u32)"]
    }
}
