//! The OP, MODE and FINISH codes of the shader modules, defined once. Every Rust use imports
//! them from here, and `codes_match_the_wgsl` reads every `const OP_…`, `MODE_…` and `FINISH_…`
//! of each module's WGSL and checks it against [`LOGSUMEXP_CODES`] and [`LIKELIHOOD_CODES`]: a
//! code can neither drift between Rust and WGSL nor collide inside a module.

// The log-sum-exp module (`shaders/logsumexp*.wgsl`): `RowFn`'s functions.
pub(crate) const OP_LOGSUMEXP: u32 = 0;
pub(crate) const OP_SOFTMAX: u32 = 1;
pub(crate) const OP_LOG_SOFTMAX: u32 = 2;
pub(crate) const OP_LSE_PARTS: u32 = 3;

// The likelihood module (`likelihood.wgsl`, `gmm.wgsl`, `gradients.wgsl`, `transform.wgsl`,
// `masked.wgsl`, `weighted.wgsl` in one module): one OP space.
pub(crate) const OP_GAUSSIAN: u32 = 0;
pub(crate) const OP_BCE: u32 = 1;
pub(crate) const OP_POISSON: u32 = 2;
pub(crate) const OP_LN: u32 = 3;
pub(crate) const OP_SMOOTH: u32 = 4;
pub(crate) const OP_SUM_G: u32 = 5;
pub(crate) const OP_SUM_GP: u32 = 6;
pub(crate) const OP_LSE_BWD: u32 = 7;
pub(crate) const OP_LSM_BWD: u32 = 8;
pub(crate) const OP_SM_BWD: u32 = 9;
pub(crate) const OP_GAUSS_DX: u32 = 10;
pub(crate) const OP_GAUSS_DV: u32 = 11;
pub(crate) const OP_BCE_D: u32 = 12;
pub(crate) const OP_POISSON_D: u32 = 13;
pub(crate) const OP_RESP: u32 = 14;
pub(crate) const OP_LOG_LN: u32 = 16;
pub(crate) const OP_LOG_LOG10: u32 = 17;
pub(crate) const OP_LOG_LOG1P: u32 = 18;
pub(crate) const OP_LOG_DELTA: u32 = 19;
pub(crate) const OP_MASK_APPLY: u32 = 20;
pub(crate) const OP_MASK_SOFTMAX: u32 = 21;
pub(crate) const OP_MASK_LSM: u32 = 22;
pub(crate) const OP_W_SUBST: u32 = 23;
pub(crate) const OP_W_TERMS: u32 = 24;

// Bits of `LlParams.mode`, one meaning each in the whole module.
pub(crate) const MODE_FULL: u32 = 1;
pub(crate) const MODE_LOG_INPUT: u32 = 2;
pub(crate) const MODE_SHARED_C: u32 = 4;
pub(crate) const MODE_WEIGHTED: u32 = 8;
pub(crate) const MODE_NLL: u32 = 16;
pub(crate) const MODE_TRIANGULAR: u32 = 32;
pub(crate) const MODE_FUSED_SCORE: u32 = 64;
pub(crate) const MODE_FUSED_RESP: u32 = 128;
pub(crate) const MODE_GMM_GRAD: u32 = 256;
pub(crate) const MODE_GMM_CENTERED: u32 = 512;
pub(crate) const MODE_GMM_CROSS: u32 = 1024;
pub(crate) const MODE_IN_PLACE: u32 = 2048;
pub(crate) const MODE_MEAN: u32 = 4096;

// What the last level of `reduce` writes (`LlParams.finish`).
pub(crate) const FINISH_PARTIAL: u32 = 0;
pub(crate) const FINISH_SUM: u32 = 1;
pub(crate) const FINISH_MEAN_WEIGHT: u32 = 2;
pub(crate) const FINISH_MEAN_COUNT: u32 = 3;
pub(crate) const FINISH_WEIGHT: u32 = 4;
pub(crate) const FINISH_SECOND: u32 = 5;

/// Every code of the log-sum-exp module, by its WGSL name.
#[cfg(test)]
pub(crate) const LOGSUMEXP_CODES: &[(&str, u32)] = &[
    ("OP_LOGSUMEXP", OP_LOGSUMEXP),
    ("OP_SOFTMAX", OP_SOFTMAX),
    ("OP_LOG_SOFTMAX", OP_LOG_SOFTMAX),
    ("OP_LSE_PARTS", OP_LSE_PARTS),
];

/// Every code of the likelihood module, by its WGSL name. `OP_*_FIRST` in the WGSL name the
/// first code of a file's range and are checked against the range's first op.
#[cfg(test)]
pub(crate) const LIKELIHOOD_CODES: &[(&str, u32)] = &[
    ("OP_GAUSSIAN", OP_GAUSSIAN),
    ("OP_BCE", OP_BCE),
    ("OP_POISSON", OP_POISSON),
    ("OP_LN", OP_LN),
    ("OP_SMOOTH", OP_SMOOTH),
    ("OP_SUM_G", OP_SUM_G),
    ("OP_SUM_GP", OP_SUM_GP),
    ("OP_LSE_BWD", OP_LSE_BWD),
    ("OP_LSM_BWD", OP_LSM_BWD),
    ("OP_SM_BWD", OP_SM_BWD),
    ("OP_GAUSS_DX", OP_GAUSS_DX),
    ("OP_GAUSS_DV", OP_GAUSS_DV),
    ("OP_BCE_D", OP_BCE_D),
    ("OP_POISSON_D", OP_POISSON_D),
    ("OP_RESP", OP_RESP),
    ("OP_LOG_FIRST", OP_LOG_LN),
    ("OP_LOG_LN", OP_LOG_LN),
    ("OP_LOG_LOG10", OP_LOG_LOG10),
    ("OP_LOG_LOG1P", OP_LOG_LOG1P),
    ("OP_LOG_DELTA", OP_LOG_DELTA),
    ("OP_MASK_FIRST", OP_MASK_APPLY),
    ("OP_MASK_APPLY", OP_MASK_APPLY),
    ("OP_MASK_SOFTMAX", OP_MASK_SOFTMAX),
    ("OP_MASK_LSM", OP_MASK_LSM),
    ("OP_W_FIRST", OP_W_SUBST),
    ("OP_W_SUBST", OP_W_SUBST),
    ("OP_W_TERMS", OP_W_TERMS),
    ("MODE_FULL", MODE_FULL),
    ("MODE_LOG_INPUT", MODE_LOG_INPUT),
    ("MODE_SHARED_C", MODE_SHARED_C),
    ("MODE_WEIGHTED", MODE_WEIGHTED),
    ("MODE_NLL", MODE_NLL),
    ("MODE_TRIANGULAR", MODE_TRIANGULAR),
    ("MODE_FUSED_SCORE", MODE_FUSED_SCORE),
    ("MODE_FUSED_RESP", MODE_FUSED_RESP),
    ("MODE_GMM_GRAD", MODE_GMM_GRAD),
    ("MODE_GMM_CENTERED", MODE_GMM_CENTERED),
    ("MODE_GMM_CROSS", MODE_GMM_CROSS),
    ("MODE_IN_PLACE", MODE_IN_PLACE),
    ("MODE_MEAN", MODE_MEAN),
    ("FINISH_PARTIAL", FINISH_PARTIAL),
    ("FINISH_SUM", FINISH_SUM),
    ("FINISH_MEAN_WEIGHT", FINISH_MEAN_WEIGHT),
    ("FINISH_MEAN_COUNT", FINISH_MEAN_COUNT),
    ("FINISH_WEIGHT", FINISH_WEIGHT),
    ("FINISH_SECOND", FINISH_SECOND),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::shaders;
    use std::collections::BTreeMap;

    /// `const NAME: u32 = Vu;` of every OP_, MODE_ and FINISH_ code in `wgsl`.
    fn wgsl_codes(wgsl: &str) -> BTreeMap<String, u32> {
        let mut codes = BTreeMap::new();
        for line in wgsl.lines() {
            let Some(rest) = line.trim().strip_prefix("const ") else {
                continue;
            };
            let Some((name, value)) = rest.split_once(": u32 = ") else {
                continue;
            };
            if !["OP_", "MODE_", "FINISH_"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                continue;
            }
            let value = value.trim_end_matches(';').trim_end_matches('u');
            let v: u32 = value
                .parse()
                .unwrap_or_else(|e| panic!("{name} = {value}: {e}"));
            assert!(
                codes.insert(name.to_string(), v).is_none(),
                "{name} is declared twice"
            );
        }
        codes
    }

    fn check_module(what: &str, wgsl: &[&str], table: &[(&str, u32)]) {
        let mut found = BTreeMap::new();
        for file in wgsl {
            for (name, v) in wgsl_codes(file) {
                assert!(
                    found.insert(name.clone(), v).is_none(),
                    "{what}: {name} is declared in two files"
                );
            }
        }
        let table: BTreeMap<String, u32> = table.iter().map(|&(n, v)| (n.to_string(), v)).collect();
        assert_eq!(found, table, "{what}: the WGSL's codes and src/codes.rs");
        // No two codes of a kind share a value (a range's `_FIRST` aside), and MODE codes are
        // single bits.
        for kind in ["OP_", "MODE_", "FINISH_"] {
            let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
            for (name, &v) in table.iter().filter(|(n, _)| n.starts_with(kind)) {
                if name.ends_with("_FIRST") {
                    continue;
                }
                if kind == "MODE_" {
                    assert!(v.is_power_of_two(), "{what}: {name} = {v} is not one bit");
                }
                if let Some(other) = seen.insert(v, name) {
                    panic!("{what}: {name} and {other} are both {v}");
                }
            }
        }
    }

    #[test]
    fn codes_match_the_wgsl() {
        check_module(
            "logsumexp",
            &[
                shaders::COMMON,
                shaders::LOGSUMEXP,
                shaders::LOGSUMEXP_WORDS,
                shaders::LOGSUMEXP_SUBGROUP,
                shaders::LOGSUMEXP_VEC4,
                shaders::LOGSUMEXP_OUT,
                shaders::LOGSUMEXP_OUT_VEC4,
                shaders::LOGSUMEXP_VEC4_SUBGROUP,
            ],
            LOGSUMEXP_CODES,
        );
        check_module(
            "likelihood",
            &[
                shaders::COMMON,
                shaders::LIKELIHOOD,
                shaders::GMM,
                shaders::GRADIENTS,
                shaders::TRANSFORM,
                shaders::MASKED,
                shaders::WEIGHTED,
                shaders::STABILITY,
                shaders::BANDWIDTH,
            ],
            LIKELIHOOD_CODES,
        );
    }
}
