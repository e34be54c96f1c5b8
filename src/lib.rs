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
