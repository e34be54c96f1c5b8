//! WGSL compute kernels, run by wgpu on any GPU (Vulkan, Metal, DX12, GL, WebGPU) or a software
//! adapter, for the mathematics of the log domain: row-wise log-sum-exp, softmax and
//! log_softmax with SciPy's semantics, PyTorch's log-likelihood losses and their gradients,
//! Gaussian-mixture scores and their EM fit with scikit-learn's semantics, and log transforms.
//! Every kernel has a CPU mirror in [`mod@reference`] that the tests check it against.
//!
//! ```no_run
//! let gpu = logdomain::Gpu::new()?; // WGPU_BACKEND=vulkan|gl|metal|dx12 picks the backend
//! let x = [0.0, 1.0, 2.0, 1000.0, 1000.0, f32::NEG_INFINITY];
//! let lse = gpu.logsumexp(&x, 2, 3)?; // max + log1p(Σ exp(x − max)) per row
//! assert!((lse[1] - (1000.0 + 2f32.ln())).abs() < 1e-3);
//! let p = gpu.softmax(&x, 2, 3)?; // rows × cols values
//! assert!((p[3] - 0.5).abs() < 1e-6 && p[5] == 0.0);
//! # Ok::<(), logdomain::Error>(())
//! ```
//!
//! - Blocking calls on [`Gpu`] upload, run, read back and wait; the encoder-level ops
//!   ([`RowOp`], [`LossOp`], [`GmmOp`], …) record into a caller's `wgpu::CommandEncoder` and
//!   never submit; every one also implements [`Op`], one way to record and time any op.
//! - Losses: [`Gpu::cross_entropy`], [`Gpu::nll_loss`], [`Gpu::gaussian_nll`],
//!   [`Gpu::binary_cross_entropy_with_logits`], [`Gpu::poisson_nll`], with PyTorch's options
//!   and defaults; `*_with_grad` forms return the gradient too.
//! - Classifier heads: [`Gpu::linear_cross_entropy`] and its `_with_grad` form, the loss of
//!   `h · Wᵀ + b` without the `tokens × vocab` logits.
//! - Mixtures: [`Gpu::gmm_score_samples`], [`Gpu::gmm_log_responsibilities`], and
//!   [`GaussianMixture`] for scikit-learn's EM fit.
//!
//! The README has the commands, the semantics, the accuracy contract and the speed tables.

// The README's examples compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "bench-tools")]
pub mod bandwidth;
mod codes;
mod engine;
mod error;
pub mod fit;
pub mod gmm;
pub mod gradients;
pub mod likelihood;
pub mod linear;
pub mod logsumexp;
pub mod masked;
pub mod reference;
#[cfg(feature = "bench-tools")]
pub mod stability;
pub mod transform;
pub mod weighted;

#[cfg(feature = "bench-tools")]
pub use bandwidth::ReadProbe;
pub use engine::device::{AdapterChoice, Gpu, GpuInfo, OPTIONAL_FEATURES};
pub use engine::op::{Io, Op};
pub use engine::shaders::{SENTINEL_BITS, SENTINEL_F16_BITS};
pub use error::Error;
pub use fit::{CentroidSums, CovarianceType, FitProgress, FittedGmm, GaussianMixture, InitParams};
pub use gmm::{
    Covariance, Gmm, GmmCenteredStats, GmmGradients, GmmOp, GmmOutput, GmmReduceOp, GmmReduction,
    GmmSufficientStats, KMeansStep, KMeansStepOp,
};
pub use gradients::{BackwardOp, CrossEntropyGradOp, LossGradOp};
pub use likelihood::{
    Bce, CrossEntropy, GaussianNll, InputSpec, Loss, LossOp, PoissonNll, Reduction,
};
pub use linear::{
    LinearCrossEntropy, LinearCrossEntropyGrads, LinearCrossEntropyOp, LinearKind,
    LogitCrossEntropyGrads,
};
pub use logsumexp::{
    Axes, AxisKernel, AxisOp, AxisOptions, InputFormat, NdArray, NdLayout, OutputFormat, RowFn,
    RowOp, RowsLayout, Strategy,
};
pub use masked::MaskedRowOp;
pub use reference::logsumexp::LseState;
pub use transform::{DataLayout, LogFn, LogOp, LogOpKind};
pub use weighted::WeightedLseOp;
/// The wgpu this crate is built on, for recording its ops into a caller's encoder with the same
/// types.
pub use wgpu;

#[cfg(test)]
mod tests {
    /// The handles can be shared across threads (the blocking API serialises its reused
    /// buffers behind a mutex).
    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::Gpu>();
        check::<crate::RowOp>();
        check::<crate::AxisOp>();
        check::<crate::LossOp>();
        check::<crate::GmmOp>();
        check::<crate::BackwardOp>();
        check::<crate::CrossEntropyGradOp>();
        check::<crate::LossGradOp>();
        check::<crate::GmmReduceOp>();
        check::<crate::KMeansStepOp>();
        check::<crate::LogOp>();
        check::<crate::MaskedRowOp>();
        check::<crate::WeightedLseOp>();
        check::<crate::LinearCrossEntropyOp>();
        check::<crate::Error>();
    }
}
