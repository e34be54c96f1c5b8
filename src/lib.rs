#![doc = include_str!("../README.md")]

pub mod bandwidth;
mod error;
pub mod fit;
pub mod gmm;
mod gpu;
pub mod gradients;
pub mod likelihood;
pub mod logsumexp;
pub mod masked;
pub mod reference;
pub mod shaders;
pub mod stability;
pub mod transform;
pub mod weighted;

pub use bandwidth::ReadProbe;
pub use error::Error;
pub use fit::{CovarianceType, FitProgress, FittedGmm, GaussianMixture, InitParams};
pub use gmm::{
    Covariance, Gmm, GmmCenteredStats, GmmGradients, GmmOp, GmmOutput, GmmReduceOp, GmmReduction,
    GmmSufficientStats,
};
pub use gpu::{Gpu, GpuInfo, OPTIONAL_FEATURES};
pub use gradients::{BackwardOp, CrossEntropyGradOp, LossGradOp};
pub use likelihood::{
    Bce, CrossEntropy, GaussianNll, InputSpec, Loss, LossOp, PoissonNll, Reduction,
};
pub use logsumexp::{InputFormat, OutputFormat, RowFn, RowOp, RowsLayout, Strategy};
pub use masked::MaskedRowOp;
pub use reference::logsumexp::LseState;
pub use shaders::{SENTINEL_BITS, SENTINEL_F16_BITS};
pub use transform::{DataLayout, LogFn, LogOp, LogOpKind};
pub use weighted::WeightedLseOp;

#[cfg(test)]
mod tests {
    /// The handles can be shared across threads (the blocking API serialises its reused
    /// buffers behind a mutex).
    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::Gpu>();
        check::<crate::RowOp>();
        check::<crate::LossOp>();
        check::<crate::GmmOp>();
        check::<crate::BackwardOp>();
        check::<crate::CrossEntropyGradOp>();
        check::<crate::LossGradOp>();
        check::<crate::GmmReduceOp>();
        check::<crate::LogOp>();
        check::<crate::MaskedRowOp>();
        check::<crate::WeightedLseOp>();
        check::<crate::Error>();
    }
}
