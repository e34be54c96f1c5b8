//! WGSL sources, compiled into the crate, and the parameter block they share with the host.

/// Shared helpers: special values from bits, `ld_exp_neg`, `ld_log1p`, the log-sum-exp monoid.
pub const COMMON: &str = include_str!("../../shaders/common.wgsl");
/// The log-sum-exp family (portable entry points).
pub const LOGSUMEXP: &str = include_str!("../../shaders/logsumexp.wgsl");
/// The log-sum-exp family's input as 4-byte words (follows `LOGSUMEXP`).
pub const LOGSUMEXP_WORDS: &str = include_str!("../../shaders/logsumexp_words.wgsl");
/// The log-sum-exp family, one subgroup per row (needs `Features::SUBGROUP`).
pub const LOGSUMEXP_SUBGROUP: &str = include_str!("../../shaders/logsumexp_subgroup.wgsl");
/// The log-sum-exp family with the input read as vec4 words (follows `LOGSUMEXP`, in place of
/// `LOGSUMEXP_WORDS`).
pub const LOGSUMEXP_VEC4: &str = include_str!("../../shaders/logsumexp_vec4.wgsl");
/// The log-sum-exp family's output as 4-byte words (binding 2 and its accessors).
pub const LOGSUMEXP_OUT: &str = include_str!("../../shaders/logsumexp_out.wgsl");
/// The output as vec4 words, for the vec4 kernels' 16-byte stores (in place of
/// `LOGSUMEXP_OUT`).
pub const LOGSUMEXP_OUT_VEC4: &str = include_str!("../../shaders/logsumexp_out_vec4.wgsl");
/// The log-sum-exp family over any axes of an N-d array (follows `LOGSUMEXP`, its input file
/// and `LOGSUMEXP_OUT`; binding 4 holds the folded dimensions).
pub const LOGSUMEXP_AXES: &str = include_str!("../../shaders/logsumexp_axes.wgsl");
/// The N-d entry points with four positions a 16-byte word (follows `LOGSUMEXP_AXES` in a module
/// with `LOGSUMEXP_VEC4`'s input).
pub const LOGSUMEXP_AXES_VEC4: &str = include_str!("../../shaders/logsumexp_axes_vec4.wgsl");
/// The vec4 form with several rows per subgroup (needs `Features::SUBGROUP`).
pub const LOGSUMEXP_VEC4_SUBGROUP: &str =
    include_str!("../../shaders/logsumexp_vec4_subgroup.wgsl");

/// Log-likelihood reductions: element-wise losses, categorical loss, the pairwise sum.
pub const LIKELIHOOD: &str = include_str!("../../shaders/likelihood.wgsl");
/// Gaussian mixtures' log-joint (needs the likelihood module's bindings).
pub const GMM: &str = include_str!("../../shaders/gmm.wgsl");

/// Gradients of the log-sum-exp family (element values of the likelihood module's
/// `elementwise` entry point).
pub const GRADIENTS: &str = include_str!("../../shaders/gradients.wgsl");

/// Log transforms of data and the mean of logs (element values of the likelihood module's
/// `elementwise` entry point).
pub const TRANSFORM: &str = include_str!("../../shaders/transform.wgsl");

/// Masks around the log-sum-exp family (element values of the likelihood module's
/// `elementwise` entry point).
pub const MASKED: &str = include_str!("../../shaders/masked.wgsl");

/// Weighted log-sum-exp with signs (element values of the likelihood module's `elementwise`
/// entry point, and its per-row finish).
pub const WEIGHTED: &str = include_str!("../../shaders/weighted.wgsl");

/// Fused linear cross-entropy: the classifier head's logits folded into the loss tile by tile
/// (a module of its own, the `linear` layout).
pub const LINEAR: &str = include_str!("../../shaders/linear.wgsl");
/// The linear module's operands as 4-byte words (any dims, f32 or f16; follows `LINEAR`).
pub const LINEAR_WORDS: &str = include_str!("../../shaders/linear_words.wgsl");
/// The linear module's operands as 16-byte words (f32, dims a multiple of 4; follows `LINEAR`).
pub const LINEAR_VEC4: &str = include_str!("../../shaders/linear_vec4.wgsl");
/// How the 16-byte form's dot products read the tile's shared rows: every lane all of them.
pub const LINEAR_VEC4_DOTS: &str = include_str!("../../shaders/linear_vec4_dots.wgsl");
/// The same spread over a subgroup of at least 8 lanes (needs `Features::SUBGROUP`).
pub const LINEAR_VEC4_DOTS_SUBGROUP: &str =
    include_str!("../../shaders/linear_vec4_dots_subgroup.wgsl");

/// The textbook formulas of the stability study (needs the likelihood module's bindings).
pub const STABILITY: &str = include_str!("../../shaders/stability.wgsl");

/// The read-bandwidth yardstick of the benches (needs the likelihood module's bindings).
pub const BANDWIDTH: &str = include_str!("../../shaders/bandwidth.wgsl");
/// The yardsticks with 16-byte words: a module of its own (the likelihood layout, bindings typed
/// as vec4 words).
pub const BANDWIDTH_VEC4: &str = include_str!("../../shaders/bandwidth_vec4.wgsl");

/// Every WGSL file, by name (the loop audit reads them all).
#[cfg(test)]
pub(crate) const ALL_FILES: &[(&str, &str)] = &[
    ("common", COMMON),
    ("logsumexp", LOGSUMEXP),
    ("logsumexp_words", LOGSUMEXP_WORDS),
    ("logsumexp_subgroup", LOGSUMEXP_SUBGROUP),
    ("logsumexp_vec4", LOGSUMEXP_VEC4),
    ("logsumexp_vec4_subgroup", LOGSUMEXP_VEC4_SUBGROUP),
    ("logsumexp_out", LOGSUMEXP_OUT),
    ("logsumexp_out_vec4", LOGSUMEXP_OUT_VEC4),
    ("logsumexp_axes", LOGSUMEXP_AXES),
    ("logsumexp_axes_vec4", LOGSUMEXP_AXES_VEC4),
    ("likelihood", LIKELIHOOD),
    ("gmm", GMM),
    ("gradients", GRADIENTS),
    ("transform", TRANSFORM),
    ("masked", MASKED),
    ("weighted", WEIGHTED),
    ("stability", STABILITY),
    ("linear", LINEAR),
    ("linear_words", LINEAR_WORDS),
    ("linear_vec4", LINEAR_VEC4),
    ("linear_vec4_dots", LINEAR_VEC4_DOTS),
    ("linear_vec4_dots_subgroup", LINEAR_VEC4_DOTS_SUBGROUP),
    ("bandwidth", BANDWIDTH),
    ("bandwidth_vec4", BANDWIDTH_VEC4),
];

/// The loop forms our WGSL may use, each with why it terminates. The modules are compiled
/// without wgpu's loop bounding (`Gpu::pipeline`), which is sound only if no loop is infinite;
/// the `every_loop_has_an_audited_form` test holds every `for` loop's step to this list and
/// counts the bare `loop`s. A `for` loop's condition is `v < bound` (or `<=`, `>`, as below)
/// with bounds the host keeps below 2^31, so a step of at least 1 cannot wrap past them.
#[cfg(test)]
pub(crate) const LOOP_FORMS: &[(&str, &str)] = &[
    (
        "++",
        "up by 1 to a bound below 2^31 (`i <= j`: j is an index below a dimension count)",
    ),
    ("--", "`d > 0u; d--`: down by 1 to 0"),
    ("+= total", "total = invocations of the dispatch (>= 1)"),
    ("+= groups", "groups = workgroups of the dispatch (>= 1)"),
    ("+= step", "step = lanes walking the row (>= 1)"),
    (
        "+= stride",
        "stride >= 1 (the workgroup tree starts it at 1 and multiplies it by 8)",
    ),
    ("+= BLOCK * step", "BLOCK >= 1, step >= 1"),
    ("+= BLOCK", "BLOCK >= 1"),
    (
        "+= block",
        "block = words of 4 × BLOCK entries: BLOCK, or BLOCK / 2 for f16 (>= 1)",
    ),
    ("+= AHEAD", "AHEAD = 8"),
    ("+= 4u", "a literal step of 4"),
    ("+= VEC * step", "VEC >= 1 (the host's override), step >= 1"),
    (
        "+= UNROLL * slots",
        "UNROLL = 4, slots = invocations (>= 1; the host sets it)",
    ),
    (
        "= v << 1u",
        "v starts at 1u, doubles to LANES or sg_size (<= 128, powers of two)",
    ),
    (
        "= v >> 1u",
        "`(v & 1u) == 0u`: v = blocks >= 1 (incremented just before), so a set bit ends it",
    ),
];

/// Bare `loop`s, per file, each read for its exit: gmm's `upper_entry` (`rest` falls or
/// `n - row` wraps to a large length) and logsumexp's workgroup tree (`stride` grows by 8 up
/// to WG).
#[cfg(test)]
pub(crate) const BARE_LOOPS: &[(&str, usize)] = &[("gmm", 1), ("logsumexp", 1)];

/// WGSL has no imports: a module is its files concatenated in dependency order.
pub fn module_source(files: &[&str]) -> String {
    files.join("\n")
}

/// The portable log-sum-exp module: works on every adapter, GL included.
pub fn logsumexp_module() -> String {
    module_source(&[COMMON, LOGSUMEXP, LOGSUMEXP_WORDS, LOGSUMEXP_OUT])
}

/// The N-d log-sum-exp module (the `axes` layout): the portable module and the N-d entry points.
pub fn logsumexp_axes_module() -> String {
    module_source(&[
        COMMON,
        LOGSUMEXP,
        LOGSUMEXP_WORDS,
        LOGSUMEXP_OUT,
        LOGSUMEXP_AXES,
    ])
}

/// The N-d module with the input read as vec4 words, and the four-positions-a-word entry points.
pub fn logsumexp_axes_vec4_module() -> String {
    module_source(&[
        COMMON,
        LOGSUMEXP,
        LOGSUMEXP_VEC4,
        LOGSUMEXP_OUT,
        LOGSUMEXP_AXES,
        LOGSUMEXP_AXES_VEC4,
    ])
}

/// The log-sum-exp module with the subgroup entry point.
pub fn logsumexp_subgroup_module() -> String {
    module_source(&[
        COMMON,
        LOGSUMEXP,
        LOGSUMEXP_WORDS,
        LOGSUMEXP_OUT,
        LOGSUMEXP_SUBGROUP,
    ])
}

/// The log-sum-exp module reading its input as vec4 words (portable).
pub fn logsumexp_vec4_module() -> String {
    module_source(&[COMMON, LOGSUMEXP, LOGSUMEXP_VEC4, LOGSUMEXP_OUT])
}

/// The vec4 module with the subgroup entry point.
pub fn logsumexp_vec4_subgroup_module() -> String {
    module_source(&[
        COMMON,
        LOGSUMEXP,
        LOGSUMEXP_VEC4,
        LOGSUMEXP_OUT,
        LOGSUMEXP_VEC4_SUBGROUP,
    ])
}

/// The vec4 module with 16-byte stores (softmax and log_softmax into aligned rows).
pub fn logsumexp_vec4_out_module() -> String {
    module_source(&[COMMON, LOGSUMEXP, LOGSUMEXP_VEC4, LOGSUMEXP_OUT_VEC4])
}

/// The vec4 subgroup module with 16-byte stores.
pub fn logsumexp_vec4_subgroup_out_module() -> String {
    module_source(&[
        COMMON,
        LOGSUMEXP,
        LOGSUMEXP_VEC4,
        LOGSUMEXP_OUT_VEC4,
        LOGSUMEXP_VEC4_SUBGROUP,
    ])
}

/// The likelihood module: losses, reductions, Gaussian mixtures and the log-sum-exp family's
/// gradients (portable).
pub fn likelihood_module() -> String {
    module_source(&[
        COMMON, LIKELIHOOD, GMM, GRADIENTS, TRANSFORM, MASKED, WEIGHTED, STABILITY, BANDWIDTH,
    ])
}

/// The fused linear cross-entropy module (portable).
pub fn linear_module() -> String {
    module_source(&[COMMON, LINEAR, LINEAR_WORDS])
}

/// The fused linear cross-entropy module reading 16-byte words (portable).
pub fn linear_vec4_module() -> String {
    module_source(&[COMMON, LINEAR, LINEAR_VEC4, LINEAR_VEC4_DOTS])
}

/// The 16-byte module with the shared rows' loads spread over subgroups of at least 8 lanes.
pub fn linear_vec4_subgroup_module() -> String {
    module_source(&[COMMON, LINEAR, LINEAR_VEC4, LINEAR_VEC4_DOTS_SUBGROUP])
}

/// The vec4 yardsticks' module (portable).
pub fn bandwidth_vec4_module() -> String {
    module_source(&[BANDWIDTH_VEC4])
}

/// The bit pattern (a NaN payload no kernel writes) that sentinel fills leave in outputs.
pub const SENTINEL_BITS: u32 = 0x7fa5_a5a5;

/// The f16 bit pattern (a NaN payload no kernel writes) that sentinel fills leave in f16
/// outputs.
pub const SENTINEL_F16_BITS: u16 = 0x7d5a;

/// Mirrors `struct Params` in `shaders/logsumexp.wgsl`. Offsets and strides count f32 elements
/// from the start of the bound window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub cols: u32,
    pub in_offset: u32,
    pub in_stride: u32,
    pub out_offset: u32,
    pub out_stride: u32,
    pub seg_len: u32,
    pub segs: u32,
    pub seg_base: u32,
    pub seg_total: u32,
    pub state_base: u32,
    pub row_base: u32,
    pub final_base: u32,
    pub pad: [u32; 3],
}

/// Most folded dimensions of either kind (`AXES_MAX` in `shaders/logsumexp_axes.wgsl`).
pub const AXES_MAX: usize = 8;

/// Mirrors `struct AxesParams` in `shaders/logsumexp_axes.wgsl`: the folded dimensions of an N-d
/// op, innermost first, extents and strides in entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AxesParams {
    pub kept_dims: u32,
    pub red_dims: u32,
    pub pad: [u32; 2],
    pub kept_n: [u32; AXES_MAX],
    pub kept_in: [u32; AXES_MAX],
    pub kept_out: [u32; AXES_MAX],
    pub kept_mask: [u32; AXES_MAX],
    pub red_n: [u32; AXES_MAX],
    pub red_in: [u32; AXES_MAX],
    pub red_out: [u32; AXES_MAX],
    pub red_mask: [u32; AXES_MAX],
}

/// Mirrors `struct LlParams` in `shaders/likelihood.wgsl` (see the comments there). Element
/// offsets count 4-byte words from the start of each bound window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LlParams {
    pub rows: u32,
    pub cols: u32,
    pub col0: u32,
    pub col1: u32,
    pub row0: u32,
    pub a_off: u32,
    pub b_off: u32,
    pub c_off: u32,
    pub out_off: u32,
    pub mode: u32,
    pub eps: f32,
    pub smoothing: f32,
    pub ignore: i32,
    pub len_in: u32,
    pub finish: u32,
    pub count: f32,
    pub slots: u32,
    pub k: u32,
    pub kb: u32,
    pub c2_off: u32,
    pub inner: u32,
}

/// Mirrors `struct LinParams` in `shaders/linear.wgsl` (see the comments there).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LinParams {
    pub tokens: u32,
    pub dims: u32,
    pub vocab: u32,
    pub tile_base: u32,
    pub begin: u32,
    pub end: u32,
    pub mode: u32,
    pub ignore: i32,
    pub cap: f32,
    pub inv_cap: f32,
    pub one_minus_eps: f32,
    pub eps_over_c: f32,
    pub w_sum: f32,
    pub z_loss: f32,
    pub out_off: u32,
    pub tiles: u32,
    pub h_off: u32,
    pub w_off: u32,
    pub c_off: u32,
    pub t_last: u32,
    pub v_last: u32,
    pub pad: [u32; 3],
}

/// Rows of a tile of the linear module's kernels (`LT` in `shaders/linear.wgsl`).
pub const LINEAR_TILE: u64 = 8;
/// Lanes of a workgroup of the linear module (`LW`).
pub const LINEAR_LANES: u32 = 64;
/// Words of a token's state in the linear module (`SW`).
pub const LINEAR_STATE_WORDS: u64 = 8;

/// Bytes of the uniform window of Gaussian-mixture parameters (`GMM_UNIFORM_VEC4S` vec4s in
/// `shaders/gmm.wgsl`): 16 KiB, WebGPU's and GL downlevel's smallest guaranteed uniform binding.
pub const GMM_UNIFORM_BYTES: u64 = 16 * 1024;

/// Bytes of one partial sum (s: f32, w: f32, flags: u32) between reduction levels.
pub const PARTIAL_BYTES: u64 = 12;

/// Bytes of one `StoredState` (m: f32, s: f32, flags: u32) between passes.
pub const STATE_BYTES: u64 = 12;

/// The value of the WGSL `const` `name: u32` in a parsed module (for tests that hold the host's
/// sizes to the shaders').
#[cfg(test)]
pub(crate) fn wgsl_u32_const(module: &naga::Module, name: &str) -> u32 {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{name} in WGSL"));
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => v,
        ref other => panic!("{name} is {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use naga::back::{glsl, hlsl, msl, spv};
    use naga::valid::{Capabilities, ValidationFlags, Validator};

    fn parse(src: &str) -> naga::Module {
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)))
    }

    /// Validates a module and writes it for SPIR-V, MSL, HLSL and GLSL (compute ES 3.1), each
    /// entry point with its override constants resolved as the host sets them.
    fn validate_and_translate(src: &str, caps: Capabilities) {
        validate_and_translate_with(src, caps, &[]);
    }

    fn validate_and_translate_with(src: &str, caps: Capabilities, extra: &[(&str, f64)]) {
        let module = parse(src);
        let info = Validator::new(ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
        for (op, wg) in [(0.0, 64.0), (1.0, 256.0), (2.0, 128.0)] {
            let constants: naga::back::PipelineConstants =
                [("OP".to_string(), op), ("WG".to_string(), wg)]
                    .into_iter()
                    .chain(extra.iter().map(|(k, v)| (k.to_string(), *v)))
                    .collect();
            let (module, info) =
                naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
                    .expect("overrides");
            let mut words = spv::write_vec(&module, &info, &spv::Options::default(), None);
            assert!(words.as_mut().is_ok(), "SPIR-V: {words:?}");
            msl::write_string(
                &module,
                &info,
                &msl::Options::default(),
                &msl::PipelineOptions::default(),
            )
            .expect("MSL");
            let mut hlsl_out = String::new();
            hlsl::Writer::new(
                &mut hlsl_out,
                &hlsl::Options::default(),
                &hlsl::PipelineOptions::default(),
            )
            .write(&module, &info, None)
            .expect("HLSL");
            for ep in &module.entry_points {
                let mut glsl_out = String::new();
                let options = glsl::Options {
                    version: glsl::Version::Embedded {
                        version: 310,
                        is_webgl: false,
                    },
                    ..Default::default()
                };
                let pipeline = glsl::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: ep.name.clone(),
                    multiview: None,
                };
                glsl::Writer::new(
                    &mut glsl_out,
                    &module,
                    &info,
                    &options,
                    &pipeline,
                    Default::default(),
                )
                .and_then(|mut w| w.write())
                .unwrap_or_else(|e| panic!("GLSL {}: {e}", ep.name));
            }
        }
    }

    #[test]
    fn portable_module_validates_and_translates_everywhere() {
        // No optional capability at all: what WebGPU and GL downlevel devices accept; f16
        // inputs need none either.
        for (in_f16, row_cols, out_f16) in [(0.0, 0.0, 0.0), (1.0, 16.0, 1.0)] {
            validate_and_translate_with(
                &logsumexp_module(),
                Capabilities::empty(),
                &[
                    ("IN_F16", in_f16),
                    ("ROW_COLS", row_cols),
                    ("OUT_F16", out_f16),
                ],
            );
        }
    }

    #[test]
    fn axes_modules_validate_and_translate_everywhere() {
        for module in [logsumexp_axes_module(), logsumexp_axes_vec4_module()] {
            for in_f16 in [0.0, 1.0] {
                validate_and_translate_with(
                    &module,
                    Capabilities::empty(),
                    &[
                        ("IN_F16", in_f16),
                        ("ROW_COLS", 0.0),
                        ("OUT_F16", 0.0),
                        ("MASKED", in_f16),
                    ],
                );
            }
        }
    }

    #[test]
    fn linear_module_validates_and_translates_everywhere() {
        for in_f16 in [0.0, 1.0] {
            validate_and_translate_with(
                &linear_module(),
                Capabilities::empty(),
                &[("IN_F16", in_f16)],
            );
        }
        for ql in [1.0, 2.0, 4.0] {
            validate_and_translate_with(
                &linear_vec4_module(),
                Capabilities::empty(),
                &[("IN_F16", 0.0), ("QL", ql)],
            );
            validate_and_translate_with(
                &linear_vec4_subgroup_module(),
                Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER,
                &[("IN_F16", 0.0), ("QL", ql)],
            );
        }
    }

    #[test]
    fn subgroup_module_validates_and_translates_everywhere() {
        validate_and_translate(
            &logsumexp_subgroup_module(),
            Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER,
        );
    }

    /// The loop audit behind dropping wgpu's loop bounding: every `for` loop's step is one of
    /// `LOOP_FORMS`, the shift forms have their audited start and condition, no `while`, and
    /// the bare `loop`s are the audited ones.
    #[test]
    fn every_loop_has_an_audited_form() {
        let mut seen = std::collections::BTreeSet::new();
        for &(name, text) in ALL_FILES {
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(" ");
            let words: Vec<&str> = code
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .collect();
            assert!(!words.contains(&"while"), "{name}: a while loop");
            let bare = words.iter().filter(|w| **w == "loop").count();
            let audited = BARE_LOOPS
                .iter()
                .find(|(f, _)| *f == name)
                .map_or(0, |(_, n)| *n);
            assert_eq!(bare, audited, "{name}: bare loops");
            let mut rest = code.as_str();
            while let Some(at) = rest.find("for (") {
                let header = &rest[at + 5..];
                let header = &header[..header.find(") {").expect("for header")];
                let parts: Vec<String> = header
                    .split(';')
                    .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect();
                assert_eq!(parts.len(), 3, "{name}: for ({header})");
                let (init, cond, step) = (&parts[0], &parts[1], &parts[2]);
                let var = init
                    .strip_prefix("var ")
                    .and_then(|v| v.split(' ').next())
                    .unwrap_or_else(|| panic!("{name}: for ({header}) declares no variable"));
                // The step with the loop variable written v: `v++` -> "++", `row += total`
                // -> "+= total", `o = o << 1u` -> "= v << 1u".
                let form = step
                    .strip_prefix(var)
                    .unwrap_or_else(|| panic!("{name}: for ({header}) steps another variable"))
                    .split(' ')
                    .map(|w| if w == var { "v" } else { w })
                    .collect::<Vec<_>>()
                    .join(" ")
                    .trim()
                    .to_string();
                let known = LOOP_FORMS.iter().any(|(f, _)| *f == form);
                assert!(
                    known,
                    "{name}: for ({header}): step {form:?} is not an audited form"
                );
                match form.as_str() {
                    "++" => assert!(
                        cond.starts_with(&format!("{var} < "))
                            || cond.starts_with(&format!("{var} <= ")),
                        "{name}: for ({header})"
                    ),
                    "--" => assert_eq!(*cond, format!("{var} > 0u"), "{name}: for ({header})"),
                    "= v << 1u" => assert!(
                        init.ends_with("= 1u")
                            && (cond == &format!("{var} < LANES")
                                || cond == &format!("{var} < sg_size")),
                        "{name}: for ({header})"
                    ),
                    "= v >> 1u" => assert!(
                        init == &format!("var {var} = blocks")
                            && cond == &format!("({var} & 1u) == 0u"),
                        "{name}: for ({header})"
                    ),
                    _ => assert!(
                        cond.contains(&format!("{var} < ")),
                        "{name}: for ({header})"
                    ),
                }
                seen.insert(form);
                rest = &rest[at + 5..];
            }
        }
        // The audit list has no form that no loop uses.
        for (form, _) in LOOP_FORMS {
            assert!(
                seen.contains(*form),
                "LOOP_FORMS lists {form:?}, which no loop uses"
            );
        }
    }

    #[test]
    fn bandwidth_vec4_module_validates_and_translates_everywhere() {
        validate_and_translate(&bandwidth_vec4_module(), Capabilities::empty());
    }

    #[test]
    fn vec4_modules_validate_and_translate_everywhere() {
        for (vec, lanes) in [(1.0, 1.0), (4.0, 8.0), (16.0, 32.0)] {
            validate_and_translate_with(
                &logsumexp_vec4_module(),
                Capabilities::empty(),
                &[("VEC", vec)],
            );
            validate_and_translate_with(
                &logsumexp_vec4_subgroup_module(),
                Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER,
                &[("VEC", vec), ("LANES", lanes)],
            );
            validate_and_translate_with(
                &logsumexp_vec4_out_module(),
                Capabilities::empty(),
                &[("VEC", vec)],
            );
            validate_and_translate_with(
                &logsumexp_vec4_subgroup_out_module(),
                Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER,
                &[("VEC", vec), ("LANES", lanes)],
            );
        }
    }

    #[test]
    fn likelihood_module_validates_and_translates_everywhere() {
        for reduce in [0.0, 1.0] {
            for in_f16 in [0.0, 1.0] {
                validate_and_translate_with(
                    &likelihood_module(),
                    Capabilities::empty(),
                    &[("REDUCE", reduce), ("GMM_DIMS", 16.0), ("IN_F16", in_f16)],
                );
            }
        }
    }

    #[test]
    fn likelihood_params_layout_matches_wgsl() {
        // 21 four-byte members, each at 4 * index, in the order of the Rust struct.
        assert_eq!(std::mem::size_of::<LlParams>(), 84);
        let module = parse(&likelihood_module());
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("LlParams"))
            .expect("LlParams in WGSL");
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("not a struct")
        };
        assert_eq!(*span as usize, std::mem::size_of::<LlParams>());
        let names = [
            "rows",
            "cols",
            "col0",
            "col1",
            "row0",
            "a_off",
            "b_off",
            "c_off",
            "out_off",
            "mode",
            "eps",
            "smoothing",
            "ignore",
            "len_in",
            "finish",
            "count",
            "slots",
            "k",
            "kb",
            "c2_off",
            "inner",
        ];
        assert_eq!(members.len(), names.len());
        for (i, (m, name)) in members.iter().zip(names).enumerate() {
            assert_eq!(m.name.as_deref(), Some(name));
            assert_eq!(m.offset as usize, 4 * i, "{name}");
        }
        // The Rust struct has the same members in the same order (bytemuck forbids padding).
        let p = LlParams {
            rows: 1,
            c2_off: 20,
            inner: 21,
            ..LlParams::default()
        };
        let words: &[u32] = bytemuck::cast_slice(std::slice::from_ref(&p));
        assert_eq!((words[0], words[19], words[20]), (1, 20, 21));
    }

    #[test]
    fn linear_params_layout_matches_wgsl() {
        // 24 four-byte members, each at 4 * index, in the order of the Rust struct.
        assert_eq!(std::mem::size_of::<LinParams>(), 96);
        let module = parse(&linear_module());
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("LinParams"))
            .expect("LinParams in WGSL");
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("not a struct")
        };
        assert_eq!(*span as usize, std::mem::size_of::<LinParams>());
        let names = [
            "tokens",
            "dims",
            "vocab",
            "tile_base",
            "begin",
            "end",
            "mode",
            "ignore",
            "cap",
            "inv_cap",
            "one_minus_eps",
            "eps_over_c",
            "w_sum",
            "z_loss",
            "out_off",
            "tiles",
            "h_off",
            "w_off",
            "c_off",
            "t_last",
            "v_last",
            "pad0",
            "pad1",
            "pad2",
        ];
        assert_eq!(members.len(), names.len());
        for (i, (m, name)) in members.iter().zip(names).enumerate() {
            assert_eq!(m.name.as_deref(), Some(name));
            assert_eq!(m.offset as usize, 4 * i, "{name}");
        }
        let p = LinParams {
            tokens: 1,
            tiles: 16,
            v_last: 21,
            ..LinParams::default()
        };
        let words: &[u32] = bytemuck::cast_slice(std::slice::from_ref(&p));
        assert_eq!((words[0], words[15], words[20]), (1, 16, 21));
        // The tile, lanes and state words the host plans with are the WGSL's.
        let src = LINEAR;
        assert!(src.contains(&format!("const LT: u32 = {LINEAR_TILE}u;")));
        assert!(src.contains(&format!("const LW: u32 = {LINEAR_LANES}u;")));
        assert!(src.contains(&format!("const SW: u32 = {LINEAR_STATE_WORDS}u;")));
        assert!(src.contains("const RL: u32 = 4u;") && src.contains("const LB: u32 = 256u;"));
    }

    #[test]
    fn params_layout_matches_wgsl() {
        // The WGSL struct has 16 u32 members: 64 bytes, every member at 4 * index.
        assert_eq!(std::mem::size_of::<Params>(), 64);
        let module = parse(&logsumexp_module());
        let ty = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))
            .map(|(_, t)| t.clone())
            .expect("Params in WGSL");
        let naga::TypeInner::Struct { members, span } = ty.inner else {
            panic!("not a struct")
        };
        assert_eq!(span as usize, std::mem::size_of::<Params>());
        let p = Params::default();
        let base = &p as *const Params as usize;
        let rust_offsets = [
            &p.rows as *const u32 as usize,
            &p.cols as *const u32 as usize,
            &p.in_offset as *const u32 as usize,
            &p.in_stride as *const u32 as usize,
            &p.out_offset as *const u32 as usize,
            &p.out_stride as *const u32 as usize,
            &p.seg_len as *const u32 as usize,
            &p.segs as *const u32 as usize,
            &p.seg_base as *const u32 as usize,
            &p.seg_total as *const u32 as usize,
            &p.state_base as *const u32 as usize,
            &p.row_base as *const u32 as usize,
            &p.final_base as *const u32 as usize,
        ];
        for (i, off) in rust_offsets.iter().enumerate() {
            assert_eq!(
                members[i].offset as usize,
                off - base,
                "member {:?}",
                members[i].name
            );
        }
        let state = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("StoredState"))
            .map(|(_, t)| t.inner.clone())
            .expect("StoredState in WGSL");
        let naga::TypeInner::Struct { span, .. } = state else {
            panic!("not a struct")
        };
        assert_eq!(span as u64, STATE_BYTES);
    }

    #[test]
    fn axes_params_layout_matches_wgsl() {
        let module = parse(&logsumexp_axes_module());
        let ty = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("AxesParams"))
            .map(|(_, t)| t.clone())
            .expect("AxesParams in WGSL");
        let naga::TypeInner::Struct { members, span } = ty.inner else {
            panic!("not a struct")
        };
        assert_eq!(span as usize, std::mem::size_of::<AxesParams>());
        let p = AxesParams::default();
        let base = &p as *const AxesParams as usize;
        let rust = [
            ("kept_dims", &p.kept_dims as *const u32 as usize),
            ("red_dims", &p.red_dims as *const u32 as usize),
            ("pad0", &p.pad[0] as *const u32 as usize),
            ("pad1", &p.pad[1] as *const u32 as usize),
            ("kept_n", p.kept_n.as_ptr() as usize),
            ("kept_in", p.kept_in.as_ptr() as usize),
            ("kept_out", p.kept_out.as_ptr() as usize),
            ("kept_mask", p.kept_mask.as_ptr() as usize),
            ("red_n", p.red_n.as_ptr() as usize),
            ("red_in", p.red_in.as_ptr() as usize),
            ("red_out", p.red_out.as_ptr() as usize),
            ("red_mask", p.red_mask.as_ptr() as usize),
        ];
        assert_eq!(members.len(), rust.len());
        for (m, (name, at)) in members.iter().zip(rust) {
            assert_eq!(m.name.as_deref(), Some(name));
            assert_eq!(m.offset as usize, at - base, "{name}");
        }
        assert_eq!(
            wgsl_u32_const(&module, "AXES_MAX") as usize,
            AXES_MAX,
            "AXES_MAX"
        );
    }

    #[test]
    fn sentinel_matches_wgsl() {
        let module = parse(&logsumexp_module());
        assert_eq!(wgsl_u32_const(&module, "SENTINEL"), SENTINEL_BITS);
        assert_eq!(
            wgsl_u32_const(&parse(&logsumexp_module()), "SENTINEL_F16"),
            u32::from(SENTINEL_F16_BITS)
        );
    }

    /// Workgroup memory and the largest workgroup the host asks for fit WebGPU's default limits
    /// and wgpu's downlevel (GL) defaults.
    #[test]
    fn workgroup_resources_fit_default_limits() {
        let module = parse(&logsumexp_subgroup_module());
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("layout");
        let bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
            .map(|(_, v)| layouter[v.ty].size)
            .sum();
        let wg_max = wgsl_u32_const(&module, "WG_MAX");
        assert_eq!(wg_max, crate::engine::geometry::WG_MAX);
        for limits in [wgpu::Limits::default(), wgpu::Limits::downlevel_defaults()] {
            assert!(
                bytes <= limits.max_compute_workgroup_storage_size,
                "{bytes} bytes"
            );
            assert!(wg_max <= limits.max_compute_invocations_per_workgroup);
            assert!(wg_max <= limits.max_compute_workgroup_size_x);
        }
    }
}
