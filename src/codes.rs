//! The OP, MODE and FINISH codes of the shader modules, defined once: each line of a `codes!`
//! table defines the Rust constant and names it for the test. `codes_match_the_wgsl` reads every
//! `const OP_…`, `MODE_…` and `FINISH_…` of each module's WGSL and checks it against the table:
//! a code can neither drift between Rust and WGSL nor collide inside a module. Adding an op is
//! one line here (CONTRIBUTING.md).

/// Defines each `NAME = value` as a `pub(crate) const` and lists them all, by name, in `$table`.
macro_rules! codes {
    ($(#[$doc:meta])* $table:ident { $($(#[$attr:meta])* $name:ident = $value:expr,)* }) => {
        $($(#[$attr])* pub(crate) const $name: u32 = $value;)*
        $(#[$doc])*
        #[cfg(test)]
        pub(crate) const $table: &[(&str, u32)] = &[$((stringify!($name), $name)),*];
    };
}

codes! {
    /// Every code of the log-sum-exp module (`shaders/logsumexp*.wgsl`), by its WGSL name.
    LOGSUMEXP_CODES {
        // `RowFn`'s functions.
        OP_LOGSUMEXP = 0,
        OP_SOFTMAX = 1,
        OP_LOG_SOFTMAX = 2,
        OP_LSE_PARTS = 3,
        // The N-d weighted log-sum-exp with signs (`logsumexp_axes.wgsl`).
        OP_LSE_WEIGHTED = 4,
        // The N-d backward ops (`logsumexp_axes.wgsl`).
        OP_LSE_BWD_ND = 5,
        OP_SM_BWD_ND = 6,
        OP_LSM_BWD_ND = 7,
    }
}

codes! {
    /// Every code of the likelihood module (`likelihood.wgsl`, `gmm.wgsl`, `gradients.wgsl`,
    /// `transform.wgsl`, `masked.wgsl`, `weighted.wgsl` in one module: one OP space, in blocks
    /// by file), by its WGSL name. `OP_*_FIRST` opens a file's block: its ops lie between it and
    /// the next block's first.
    LIKELIHOOD_CODES {
        // likelihood.wgsl: the losses.
        OP_GAUSSIAN = 0,
        OP_BCE = 1,
        OP_POISSON = 2,
        OP_LN = 3,
        OP_SMOOTH = 4,
        // gradients.wgsl: 5–15.
        OP_SUM_G = 5,
        OP_SUM_GP = 6,
        OP_LSE_BWD = 7,
        OP_LSM_BWD = 8,
        OP_SM_BWD = 9,
        OP_GAUSS_DX = 10,
        OP_GAUSS_DV = 11,
        OP_BCE_D = 12,
        OP_POISSON_D = 13,
        OP_RESP = 14,
        OP_ONEHOT = 15,
        // transform.wgsl: 16–23.
        #[allow(dead_code)] // the block's first code, a marker of the WGSL's
        OP_LOG_FIRST = 16,
        OP_LOG_LN = 16,
        OP_LOG_LOG10 = 17,
        OP_LOG_LOG1P = 18,
        OP_LOG_DELTA = 19,
        OP_LOG_ADDEXP = 20,
        // masked.wgsl: 24–27.
        #[allow(dead_code)] // the block's first code, a marker of the WGSL's
        OP_MASK_FIRST = 24,
        OP_MASK_APPLY = 24,
        OP_MASK_SOFTMAX = 25,
        OP_MASK_LSM = 26,
        // weighted.wgsl: 28–31.
        #[allow(dead_code)] // the block's first code, a marker of the WGSL's
        OP_W_FIRST = 28,
        OP_W_SUBST = 28,
        OP_W_TERMS = 29,

        // Bits of `LlParams.mode`, one meaning each in the whole module.
        MODE_FULL = 1,
        MODE_LOG_INPUT = 2,
        MODE_SHARED_C = 4,
        MODE_WEIGHTED = 8,
        MODE_NLL = 16,
        MODE_TRIANGULAR = 32,
        MODE_FUSED_SCORE = 64,
        MODE_FUSED_RESP = 128,
        MODE_GMM_GRAD = 256,
        MODE_GMM_CENTERED = 512,
        MODE_GMM_CROSS = 1024,
        MODE_IN_PLACE = 2048,
        MODE_MEAN = 4096,
        // likelihood.wgsl: OP_SMOOTH sums probability targets' terms; `categorical` takes them.
        MODE_SOFT = 8192,
        // gmm.wgsl: the fused joint kernels write each point's most probable component.
        MODE_FUSED_ARGMAX = 16384,

        // gmm.wgsl: 32–39, the covariance kind, its parameters in binding b or (_U) in the
        // uniform binding.
        #[allow(dead_code)] // the block's first code, a marker of the WGSL's
        OP_GMM_FIRST = 32,
        OP_GMM_DIAG = 32,
        OP_GMM_SPHERICAL = 33,
        OP_GMM_FULL = 34,
        OP_GMM_DIAG_U = 35,
        OP_GMM_SPHERICAL_U = 36,
        OP_GMM_FULL_U = 37,

        // What the last level of `reduce` writes (`LlParams.finish`).
        FINISH_PARTIAL = 0,
        FINISH_SUM = 1,
        FINISH_MEAN_WEIGHT = 2,
        FINISH_MEAN_COUNT = 3,
        FINISH_WEIGHT = 4,
        FINISH_SECOND = 5,
    }
}

codes! {
    /// Every code of the fused linear cross-entropy module (`shaders/linear.wgsl`).
    LINEAR_CODES {
        // Bits of `LinParams.mode`.
        MODE_LCE_BIAS = 1,
        MODE_LCE_WEIGHTED = 2,
        MODE_LCE_SMOOTH = 4,
        MODE_LCE_SOFTCAP = 8,
        MODE_LCE_MEAN = 16,
        MODE_LCE_NONE = 32,
        MODE_LCE_FIRST = 64,
        MODE_LCE_DENSE = 128,
        MODE_LCE_FILTER = 256,
        MODE_LCE_GIVEN = 512,
    }
}

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
        // A file's ops lie in its block: from its `OP_*_FIRST` up to the next block's first.
        let mut firsts: Vec<u32> = found
            .iter()
            .filter(|(n, _)| n.starts_with("OP_") && n.ends_with("_FIRST"))
            .map(|(_, &v)| v)
            .collect();
        firsts.sort();
        for file in wgsl {
            let codes = wgsl_codes(file);
            let Some((_, &first)) = codes
                .iter()
                .find(|(n, _)| n.starts_with("OP_") && n.ends_with("_FIRST"))
            else {
                continue;
            };
            let end = firsts
                .iter()
                .copied()
                .find(|&f| f > first)
                .unwrap_or(u32::MAX);
            for (name, &v) in codes.iter().filter(|(n, _)| n.starts_with("OP_")) {
                assert!(
                    (first..end).contains(&v),
                    "{what}: {name} = {v} is outside its file's block {first}..{end}"
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
                shaders::LOGSUMEXP_AXES,
                shaders::LOGSUMEXP_AXES_VEC4,
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
        check_module("linear", &[shaders::COMMON, shaders::LINEAR], LINEAR_CODES);
    }
}
