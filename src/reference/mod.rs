//! CPU reference implementations. Each module mirrors one `shaders/<family>.wgsl` file: the same
//! names, the same elementary functions and the same monoid, evaluated in f32. They check the
//! kernels in the tests and give the CPU side of the speed comparisons (single-threaded).

pub mod bandwidth;
pub mod gmm;
pub mod gradients;
pub mod likelihood;
pub mod linear;
pub mod logsumexp;
pub mod masked;
pub mod transform;
pub mod weighted;
