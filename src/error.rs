use std::fmt;

/// Everything that can go wrong in `logdomain`. Messages say what to do about it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// No wgpu adapter was found (or none matched `WGPU_ADAPTER_NAME`).
    NoAdapter(String),
    /// The adapter refused to create a device.
    RequestDevice(String),
    /// A host slice does not have the length the shape implies.
    InputLength {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// `rows × cols` (or a stride, or an offset) overflows what can be addressed.
    Shape(String),
    /// A caller's buffer cannot be used: too small, a usage flag missing, misaligned, aliased.
    Buffer(String),
    /// The problem is beyond a limit of the device that the op cannot work around.
    Limit(String),
    /// The chosen strategy or feature is not available on this device.
    Unsupported(String),
    /// An `axis` argument names no axis of the array, or one twice (SciPy's `AxisError` and
    /// "duplicate value in 'axis'").
    Axis(String),
    /// A value of the input or of the options is invalid (a target out of range, a negative
    /// variance, mixture weights that do not sum to 1, ...); the message names it.
    Value(String),
    /// wgpu reported an error (out of memory, lost device, a failed map).
    Gpu(String),
}

pub(crate) const SOFTWARE_ADAPTER_HINT: &str = "on a machine without a GPU install a software \
adapter: Mesa's llvmpipe through GL (Debian/Ubuntu: apt-get install -y libgl1-mesa-dri libegl1, \
then WGPU_BACKEND=gl) or lavapipe through Vulkan (apt-get install -y mesa-vulkan-drivers, then \
WGPU_BACKEND=vulkan)";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(why) => {
                write!(f, "no wgpu adapter found ({why}); {SOFTWARE_ADAPTER_HINT}")
            }
            Error::RequestDevice(why) => write!(f, "the adapter refused to create a device: {why}"),
            Error::InputLength {
                what,
                expected,
                actual,
            } => write!(
                f,
                "{what} has {actual} elements but the shape needs {expected} (row-major rows × cols)"
            ),
            Error::Shape(why) => write!(f, "shape not supported: {why}"),
            Error::Buffer(why) => write!(f, "buffer not usable: {why}"),
            Error::Limit(why) => write!(f, "beyond the device's limits: {why}"),
            Error::Unsupported(why) => write!(f, "not supported on this device: {why}"),
            Error::Axis(why) => write!(f, "invalid axis: {why}"),
            Error::Value(why) => write!(f, "invalid value: {why}"),
            Error::Gpu(why) => write!(f, "wgpu error: {why}"),
        }
    }
}

impl std::error::Error for Error {}
