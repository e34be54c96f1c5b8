#![doc = include_str!("../README.md")]

mod error;
mod gpu;
pub mod logsumexp;
pub mod reference;
pub mod shaders;

pub use error::Error;
pub use gpu::{Gpu, GpuInfo, OPTIONAL_FEATURES};
pub use logsumexp::{RowFn, RowOp, RowsLayout, Strategy};
pub use shaders::SENTINEL_BITS;

#[cfg(test)]
mod tests {
    /// The handles can be shared across threads (the blocking API serialises its reused
    /// buffers behind a mutex).
    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::Gpu>();
        check::<crate::RowOp>();
        check::<crate::Error>();
    }
}
