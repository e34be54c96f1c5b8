//! `logdomain._native`: the compiled half of the Python package. Each function takes NumPy
//! arrays the Python layer (`python/logdomain/`) has already shaped, checked and converted,
//! calls the Rust crate with the GIL released, and returns NumPy arrays. Argument semantics
//! (SciPy's axes, PyTorch's class axis, broadcasting) live in the Python layer; this file only
//! moves arrays in and out and turns the crate's errors into Python exceptions.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use half::f16;
use logdomain::reference::logsumexp::{ld_log1p, log_softmax_entry, softmax_entry};
use logdomain::wgpu::Features;
use logdomain::{
    AdapterChoice, Axes, Bce, Covariance, CrossEntropy, Error, GaussianNll, Gmm, Gpu, GpuInfo,
    InputFormat, LinearCrossEntropy, LseState, NdArray, NdLayout, PoissonNll, Reduction, RowFn,
};
use numpy::ndarray::{Dimension, IxDyn, ShapeBuilder};
use numpy::{
    Element, PyArray, PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArray,
    PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

create_exception!(
    logdomain,
    NoAdapterError,
    PyRuntimeError,
    "No wgpu adapter was found (or none matched the backend or adapter name asked for); the \
     message names the software adapters to install on a machine without a GPU."
);
create_exception!(
    logdomain,
    DeviceError,
    PyRuntimeError,
    "The device failed or refused the work: a limit of the adapter, an unsupported feature, an \
     out-of-memory or lost device, or an internal error of logdomain."
);

thread_local! {
    /// The message of the last panic on this thread, kept by the module's panic hook so that a
    /// caught panic becomes a `DeviceError` with its message instead of text on stderr.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// What a call on the GPU can end in, other than a value.
enum Failure {
    Lib(Error),
    Panic(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Lib(e)
    }
}

/// Runs `f` with the GIL released, catching a panic of the crate or of a dependency.
fn on_gpu<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, Failure> + Send,
) -> Result<T, Failure> {
    py.detach(|| match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let hooked = LAST_PANIC.with(|p| p.borrow_mut().take());
            let text = hooked
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(Failure::Panic(text))
        }
    })
}

fn py_err(py: Python<'_>, failure: Failure) -> PyErr {
    let e = match failure {
        Failure::Panic(text) => {
            return DeviceError::new_err(format!(
                "internal error in logdomain or wgpu (please report it): {text}"
            ));
        }
        Failure::Lib(e) => e,
    };
    let msg = e.to_string();
    match e {
        Error::NoAdapter(_) => NoAdapterError::new_err(msg),
        Error::Axis(_) => axis_error(py, msg),
        Error::InputLength { .. } | Error::Shape(_) | Error::Buffer(_) | Error::Value(_) => {
            PyValueError::new_err(msg)
        }
        // RequestDevice, Limit, Unsupported, Gpu and any error a later crate version adds.
        _ => DeviceError::new_err(msg),
    }
}

/// NumPy's `AxisError` (a `ValueError` and an `IndexError`), as SciPy raises it.
fn axis_error(py: Python<'_>, msg: String) -> PyErr {
    let ty = py
        .import("numpy.exceptions")
        .or_else(|_| py.import("numpy"))
        .and_then(|m| m.getattr("AxisError"));
    match ty {
        Ok(ty) => match ty.call1((msg.clone(),)) {
            Ok(obj) => PyErr::from_value(obj),
            Err(_) => PyValueError::new_err(msg),
        },
        Err(_) => PyValueError::new_err(msg),
    }
}

trait OrPy<T> {
    fn or_py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrPy<T> for Result<T, Failure> {
    fn or_py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|f| py_err(py, f))
    }
}

/// A wgpu device with logdomain's pipelines.
#[pyclass(frozen, module = "logdomain._native")]
struct Device {
    gpu: Arc<Gpu>,
}

fn features_of(info: &GpuInfo) -> Vec<&'static str> {
    let mut names = Vec::new();
    for (flag, name) in [
        (Features::SUBGROUP, "subgroup"),
        (Features::SHADER_F16, "shader_f16"),
        (Features::TIMESTAMP_QUERY, "timestamp_query"),
    ] {
        if info.features.contains(flag) {
            names.push(name);
        }
    }
    names
}

fn info_dict<'py>(py: Python<'py>, info: &GpuInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &info.name)?;
    d.set_item("backend", backend_name(info))?;
    d.set_item("device_type", device_type_name(info))?;
    d.set_item("driver", &info.driver)?;
    d.set_item("features", features_of(info))?;
    Ok(d)
}

fn backend_name(info: &GpuInfo) -> String {
    info.backend.to_string().to_lowercase()
}

fn device_type_name(info: &GpuInfo) -> String {
    format!("{:?}", info.device_type).to_lowercase()
}

#[pymethods]
impl Device {
    /// A device on the adapter the arguments name; `None` takes `WGPU_BACKEND` and
    /// `WGPU_ADAPTER_NAME` from the environment, else wgpu's choice.
    #[new]
    #[pyo3(signature = (backend=None, adapter=None))]
    fn new(py: Python<'_>, backend: Option<String>, adapter: Option<String>) -> PyResult<Device> {
        let gpu = on_gpu(py, move || {
            let mut choice = AdapterChoice::from_env()?;
            if backend.is_some() {
                choice.backend = backend;
            }
            if adapter.is_some() {
                choice.name = adapter;
            }
            Ok(Gpu::with_choice(&choice)?)
        })
        .or_py(py)?;
        Ok(Device { gpu: Arc::new(gpu) })
    }

    /// The adapter's name (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    #[getter]
    fn name(&self) -> String {
        self.gpu.info().name.clone()
    }

    /// The wgpu backend: `vulkan`, `gl`, `metal`, `dx12` or `webgpu`.
    #[getter]
    fn backend(&self) -> String {
        backend_name(self.gpu.info())
    }

    /// `discretegpu`, `integratedgpu`, `cpu` (a software adapter), `virtualgpu` or `other`.
    #[getter]
    fn device_type(&self) -> String {
        device_type_name(self.gpu.info())
    }

    /// The driver's name and version.
    #[getter]
    fn driver(&self) -> String {
        self.gpu.info().driver.clone()
    }

    /// The optional features the kernels use that the device has.
    #[getter]
    fn features(&self) -> Vec<&'static str> {
        features_of(self.gpu.info())
    }

    fn __repr__(&self) -> String {
        let info = self.gpu.info();
        format!(
            "Device(name={:?}, backend={:?}, device_type={:?})",
            info.name,
            backend_name(info),
            device_type_name(info)
        )
    }
}

/// The adapters of `backend` (every backend for `None`) as dicts.
#[pyfunction]
#[pyo3(signature = (backend=None))]
fn adapters<'py>(py: Python<'py>, backend: Option<String>) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let infos = on_gpu(py, move || Ok(Gpu::adapters(backend.as_deref())?)).or_py(py)?;
    infos.iter().map(|i| info_dict(py, i)).collect()
}

fn row_fn(func: &str) -> PyResult<RowFn> {
    match func {
        "logsumexp" => Ok(RowFn::Logsumexp),
        "softmax" => Ok(RowFn::Softmax),
        "log_softmax" => Ok(RowFn::LogSoftmax),
        other => Err(PyValueError::new_err(format!(
            "unknown function {other:?}; expected logsumexp, softmax or log_softmax"
        ))),
    }
}

fn reduction(name: &str) -> PyResult<Reduction> {
    match name {
        "none" => Ok(Reduction::None),
        "mean" => Ok(Reduction::Mean),
        "sum" => Ok(Reduction::Sum),
        other => Err(PyValueError::new_err(format!(
            "{other:?} is not a valid value for reduction; expected 'none', 'mean' or 'sum'"
        ))),
    }
}

/// PyTorch's categorical options from the bindings' arguments (the class weights copied once).
fn ce_options(
    weight: Option<&PyReadonlyArray1<'_, f32>>,
    ignore_index: i64,
    label_smoothing: f32,
    reduction: &str,
) -> PyResult<CrossEntropy> {
    Ok(CrossEntropy {
        weight: weight
            .map(|w| contiguous("weight", w).map(<[f32]>::to_vec))
            .transpose()?,
        ignore_index,
        label_smoothing,
        reduction: self::reduction(reduction)?,
    })
}

fn axes_of(axes: Option<Vec<isize>>) -> Axes {
    axes.map_or(Axes::All, Axes::List)
}

fn to_numpy<'py>(py: Python<'py>, a: NdArray) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    shaped(py, "result", IxDyn(&a.shape), a.values)
}

/// An array's entries as the slice from its first entry to its last and the layout of the
/// array within it, in entries, where NumPy's strides allow (aligned, non-negative and a whole
/// number of entries); `None` otherwise.
fn strided<'a, T: Element>(a: &'a PyReadonlyArrayDyn<'_, T>) -> Option<(&'a [T], NdLayout)> {
    let item = std::mem::size_of::<T>();
    let shape = a.shape().to_vec();
    let bytes = a.strides();
    if shape.contains(&0) {
        return Some((&[], NdLayout::contiguous(&shape)));
    }
    let ptr = a.data() as *const T;
    if ptr.is_null() || !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return None;
    }
    let mut strides = Vec::with_capacity(shape.len());
    let mut last = 0usize;
    for (&n, &s) in shape.iter().zip(bytes) {
        if s < 0 || !(s as usize).is_multiple_of(item) {
            return None;
        }
        let s = s as usize / item;
        last = last.checked_add(s.checked_mul(n - 1)?)?;
        strides.push(s);
    }
    // SAFETY: NumPy's array addresses the entries `ptr + Σ i_d·s_d` for i_d < n_d; with every
    // stride non-negative the lowest is `ptr` and the highest `ptr + last`, so the slice covers
    // memory the array owns or views, aligned for T. The read-only borrow keeps Rust code from
    // writing it; Python code writing the array from another thread during the call races,
    // as it does with NumPy's own GIL-free loops.
    let slice = unsafe { std::slice::from_raw_parts(ptr, last + 1) };
    Some((
        slice,
        NdLayout {
            shape,
            strides,
            offset: 0,
            format: InputFormat::F32,
        },
    ))
}

fn not_strided() -> PyErr {
    PyValueError::new_err(
        "the array's strides are negative, misaligned or not a whole number of entries; pass \
         numpy.ascontiguousarray(x)",
    )
}

/// `func` over `axes` (`None`: all) of a float32 or float16 array, read in place through its
/// strides; float32 results (the kept dimensions, or the input's shape).
#[pyfunction]
#[pyo3(signature = (device, func, x, axes, keepdims))]
fn reduce<'py>(
    py: Python<'py>,
    device: &Device,
    func: &str,
    x: &Bound<'py, PyAny>,
    axes: Option<Vec<isize>>,
    keepdims: bool,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let func = row_fn(func)?;
    let axes = axes_of(axes);
    let gpu = &*device.gpu;
    let out = if let Ok(a) = x.extract::<PyReadonlyArrayDyn<'py, f32>>() {
        let (v, layout) = strided(&a).ok_or_else(not_strided)?;
        on_gpu(py, || {
            Ok(gpu.reduce_strided(func, v, &layout, axes, keepdims)?)
        })
    } else if let Ok(a) = x.extract::<PyReadonlyArrayDyn<'py, f16>>() {
        let (v, mut layout) = strided(&a).ok_or_else(not_strided)?;
        layout.format = InputFormat::F16;
        on_gpu(py, || {
            Ok(gpu.reduce_strided_f16(func, v, &layout, axes, keepdims)?)
        })
    } else {
        return Err(PyTypeError::new_err(
            "x must be a float32 or float16 ndarray",
        ));
    };
    to_numpy(py, out.or_py(py)?)
}

/// A C-contiguous array's entries (of any dimension), or the error naming it.
fn contiguous<'a, T: Element, D: Dimension>(
    what: &str,
    a: &'a PyReadonlyArray<'_, T, D>,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{what} must be C-contiguous")))
}

/// `values` as a NumPy array of `shape`; a length that does not match is an internal error.
fn shaped<'py, T: Element, D: Dimension, Sh: ShapeBuilder<Dim = D>>(
    py: Python<'py>,
    what: &str,
    shape: Sh,
    values: Vec<T>,
) -> PyResult<Bound<'py, PyArray<T, D>>> {
    numpy::ndarray::Array::from_shape_vec(shape, values)
        .map(|a| PyArray::from_owned_array(py, a))
        .map_err(|e| DeviceError::new_err(format!("{what} of the wrong length: {e}")))
}

/// `func` over `axes` of a C-contiguous float32 array, over the entries where the boolean
/// `where_` (broadcasting against `x` as NumPy broadcasts) is true.
#[pyfunction]
#[pyo3(signature = (device, func, x, where_, axes, keepdims))]
fn reduce_masked<'py>(
    py: Python<'py>,
    device: &Device,
    func: &str,
    x: PyReadonlyArrayDyn<'py, f32>,
    where_: PyReadonlyArrayDyn<'py, bool>,
    axes: Option<Vec<isize>>,
    keepdims: bool,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let func = row_fn(func)?;
    let axes = axes_of(axes);
    let (shape, w_shape) = (x.shape().to_vec(), where_.shape().to_vec());
    let (v, w) = (contiguous("x", &x)?, contiguous("where", &where_)?);
    let gpu = &*device.gpu;
    let out = on_gpu(py, || {
        Ok(gpu.reduce_axes_masked(func, v, &shape, w, &w_shape, axes, keepdims)?)
    });
    to_numpy(py, out.or_py(py)?)
}

/// SciPy's `logsumexp(x, axes, b=b, keepdims, return_sign=True)` of C-contiguous float32
/// arrays, `b` broadcasting against `x`: `(log|Σ b·eˣ|, sign)`.
#[pyfunction]
#[pyo3(signature = (device, x, b, axes, keepdims))]
#[allow(clippy::type_complexity)] // the (log, sign) pair is SciPy's return value
fn reduce_weighted<'py>(
    py: Python<'py>,
    device: &Device,
    x: PyReadonlyArrayDyn<'py, f32>,
    b: PyReadonlyArrayDyn<'py, f32>,
    axes: Option<Vec<isize>>,
    keepdims: bool,
) -> PyResult<(Bound<'py, PyArrayDyn<f32>>, Bound<'py, PyArrayDyn<f32>>)> {
    let axes = axes_of(axes);
    let (shape, b_shape) = (x.shape().to_vec(), b.shape().to_vec());
    let (v, w) = (contiguous("x", &x)?, contiguous("b", &b)?);
    let gpu = &*device.gpu;
    let (log, sign) = on_gpu(py, || {
        Ok(gpu.reduce_axes_weighted(v, &shape, w, &b_shape, axes, keepdims)?)
    })
    .or_py(py)?;
    Ok((to_numpy(py, log)?, to_numpy(py, sign)?))
}

fn rows_cols(what: &str, shape: &[usize]) -> PyResult<(usize, usize)> {
    match shape {
        [rows, cols] => Ok((*rows, *cols)),
        _ => Err(PyValueError::new_err(format!(
            "{what} must be 2-D (rows, classes), not of shape {shape:?}"
        ))),
    }
}

/// `F.cross_entropy` (`loss = "cross_entropy"`) or `F.nll_loss` (`"nll_loss"`) of a
/// C-contiguous float32 or float16 array of PyTorch's shapes ((C,), (N, C) or (N, C, d1, …, dk),
/// classes on axis 1, read in place) and int64 class indices (row-major, the shape without the
/// class axis); with `with_grad` (cross-entropy of float32 (rows, classes) only) also the
/// gradient, (rows, classes).
#[pyfunction]
#[pyo3(signature = (device, loss, x, targets, weight, ignore_index, label_smoothing, reduction, with_grad))]
#[allow(clippy::too_many_arguments)] // PyTorch's options, one argument each
fn categorical<'py>(
    py: Python<'py>,
    device: &Device,
    loss: &str,
    x: &Bound<'py, PyAny>,
    targets: PyReadonlyArray1<'py, i64>,
    weight: Option<PyReadonlyArray1<'py, f32>>,
    ignore_index: i64,
    label_smoothing: f32,
    reduction: &str,
    with_grad: bool,
) -> PyResult<Py<PyAny>> {
    let options = ce_options(weight.as_ref(), ignore_index, label_smoothing, reduction)?;
    let t = contiguous("target", &targets)?;
    let gpu = &*device.gpu;
    let nll = match loss {
        "cross_entropy" => false,
        "nll_loss" => true,
        other => return Err(PyValueError::new_err(format!("unknown loss {other:?}"))),
    };
    if let Ok(a) = x.extract::<PyReadonlyArrayDyn<'py, f32>>() {
        let v = contiguous("input", &a)?;
        if with_grad {
            let (rows, classes) = rows_cols("input", a.shape())?;
            let (l, g) = on_gpu(py, || {
                Ok(gpu.cross_entropy_with_grad(v, rows, classes, t, &options)?)
            })
            .or_py(py)?;
            let pair = (
                PyArray1::from_vec(py, l),
                shaped(py, "gradient", (rows, classes), g)?,
            );
            return Ok(pair.into_pyobject(py)?.into_any().unbind());
        }
        let shape = a.shape();
        let l = on_gpu(py, || {
            Ok(if nll {
                gpu.nll_loss_nd(v, shape, t, &options)?
            } else {
                gpu.cross_entropy_nd(v, shape, t, &options)?
            })
        })
        .or_py(py)?;
        Ok(PyArray1::from_vec(py, l.values).into_any().unbind())
    } else if let Ok(a) = x.extract::<PyReadonlyArrayDyn<'py, f16>>() {
        if with_grad {
            return Err(PyTypeError::new_err(
                "cross_entropy_with_grad takes float32 input",
            ));
        }
        let v = contiguous("input", &a)?;
        let shape = a.shape();
        let l = on_gpu(py, || {
            Ok(if nll {
                gpu.nll_loss_nd_f16(v, shape, t, &options)?
            } else {
                gpu.cross_entropy_nd_f16(v, shape, t, &options)?
            })
        })
        .or_py(py)?;
        Ok(PyArray1::from_vec(py, l.values).into_any().unbind())
    } else {
        Err(PyTypeError::new_err(
            "input must be a float32 or float16 ndarray",
        ))
    }
}

/// `F.cross_entropy` with class-probability targets: C-contiguous float32 logits and targets of
/// one shape ((C,), (N, C) or (N, C, d1, …, dk), classes on axis 1, read in place); one loss per
/// sample (row-major, the shape without the class axis) or one value.
#[pyfunction]
#[pyo3(signature = (device, x, targets, weight, label_smoothing, reduction))]
fn cross_entropy_probs<'py>(
    py: Python<'py>,
    device: &Device,
    x: PyReadonlyArrayDyn<'py, f32>,
    targets: PyReadonlyArrayDyn<'py, f32>,
    weight: Option<PyReadonlyArray1<'py, f32>>,
    label_smoothing: f32,
    reduction: &str,
) -> PyResult<Py<PyAny>> {
    // ignore_index does not apply to probability targets.
    let ignore_index = CrossEntropy::default().ignore_index;
    let options = ce_options(weight.as_ref(), ignore_index, label_smoothing, reduction)?;
    if x.shape() != targets.shape() {
        return Err(PyValueError::new_err(format!(
            "probability targets must have the input's shape {:?}, got {:?}",
            x.shape(),
            targets.shape()
        )));
    }
    let (v, t) = (contiguous("input", &x)?, contiguous("target", &targets)?);
    let shape = x.shape();
    let gpu = &*device.gpu;
    let l = on_gpu(py, || Ok(gpu.cross_entropy_probs(v, shape, t, &options)?)).or_py(py)?;
    Ok(PyArray1::from_vec(py, l.values).into_any().unbind())
}

/// `F.cross_entropy` of C-contiguous (rows, classes) float32 or float16 logits and int64
/// class indices with the fused op's extras, the z-loss and the soft cap: the loss and each
/// row's lse, and with `with_grad` (float32 only) dloss/dlogits (rows, classes).
#[pyfunction]
#[pyo3(signature = (device, x, targets, weight, ignore_index, label_smoothing, reduction, z_loss, softcap, with_grad))]
#[allow(clippy::too_many_arguments)] // PyTorch's options and the extras, one argument each
fn logit_cross_entropy<'py>(
    py: Python<'py>,
    device: &Device,
    x: &Bound<'py, PyAny>,
    targets: PyReadonlyArray1<'py, i64>,
    weight: Option<PyReadonlyArray1<'py, f32>>,
    ignore_index: i64,
    label_smoothing: f32,
    reduction: &str,
    z_loss: f32,
    softcap: Option<f32>,
    with_grad: bool,
) -> PyResult<Py<PyAny>> {
    let options = LinearCrossEntropy {
        ce: ce_options(weight.as_ref(), ignore_index, label_smoothing, reduction)?,
        z_loss,
        softcap,
        grad_filter: false,
    };
    let t = contiguous("target", &targets)?;
    let gpu = &*device.gpu;
    let g = if let Ok(a) = x.extract::<PyReadonlyArrayDyn<'py, f32>>() {
        let (rows, classes) = rows_cols("input", a.shape())?;
        let v = contiguous("input", &a)?;
        let g = on_gpu(py, || {
            Ok(if with_grad {
                gpu.logit_cross_entropy_with_grad(v, rows, classes, t, &options)?
            } else {
                let loss = gpu.logit_cross_entropy(v, rows, classes, t, &options)?;
                logdomain::LogitCrossEntropyGrads {
                    loss,
                    d_logits: vec![],
                    lse: vec![],
                }
            })
        })
        .or_py(py)?;
        if with_grad {
            let loss = PyArray1::from_vec(py, g.loss);
            let grad = shaped(py, "gradient", (rows, classes), g.d_logits)?;
            return Ok((loss, grad).into_pyobject(py)?.into_any().unbind());
        }
        g
    } else if let Ok(a) = x.extract::<PyReadonlyArrayDyn<'py, f16>>() {
        if with_grad {
            return Err(PyTypeError::new_err(
                "cross_entropy_with_grad takes float32 input",
            ));
        }
        let (rows, classes) = rows_cols("input", a.shape())?;
        let v = contiguous("input", &a)?;
        on_gpu(py, || {
            Ok(logdomain::LogitCrossEntropyGrads {
                loss: gpu.logit_cross_entropy_f16(v, rows, classes, t, &options)?,
                d_logits: vec![],
                lse: vec![],
            })
        })
        .or_py(py)?
    } else {
        return Err(PyTypeError::new_err(
            "input must be a float32 or float16 ndarray",
        ));
    };
    Ok(PyArray1::from_vec(py, g.loss).into_any().unbind())
}

/// The fused linear cross-entropy of C-contiguous (tokens, dims) hidden states and a (vocab,
/// dims) weight, both float32 or both float16, int64 targets and an optional float32 bias:
/// the loss and each token's lse, and with `with_grad` the gradients (d_input, d_weight,
/// d_bias or None).
#[pyfunction]
#[pyo3(signature = (device, x, weight, targets, bias, class_weight, ignore_index, label_smoothing, reduction, z_loss, softcap, grad_filter, with_grad))]
#[allow(clippy::too_many_arguments)] // PyTorch's options and the extras, one argument each
fn linear_cross_entropy<'py>(
    py: Python<'py>,
    device: &Device,
    x: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    targets: PyReadonlyArray1<'py, i64>,
    bias: Option<PyReadonlyArray1<'py, f32>>,
    class_weight: Option<PyReadonlyArray1<'py, f32>>,
    ignore_index: i64,
    label_smoothing: f32,
    reduction: &str,
    z_loss: f32,
    softcap: Option<f32>,
    grad_filter: bool,
    with_grad: bool,
) -> PyResult<Py<PyAny>> {
    let options = LinearCrossEntropy {
        ce: ce_options(
            class_weight.as_ref(),
            ignore_index,
            label_smoothing,
            reduction,
        )?,
        z_loss,
        softcap,
        grad_filter,
    };
    let t = contiguous("target", &targets)?;
    let b = bias.as_ref().map(|b| contiguous("bias", b)).transpose()?;
    let gpu = &*device.gpu;
    let dims_of = |xs: &[usize], ws: &[usize]| -> PyResult<(usize, usize, usize)> {
        match (xs, ws) {
            ([n, d], [v, wd]) if d == wd => Ok((*n, *d, *v)),
            _ => Err(PyValueError::new_err(format!(
                "input must be (tokens, dims) and weight (vocab, dims), not {xs:?} and {ws:?}"
            ))),
        }
    };
    let (grads, (n, d, v)) = if let (Ok(xa), Ok(wa)) = (
        x.extract::<PyReadonlyArrayDyn<'py, f32>>(),
        weight.extract::<PyReadonlyArrayDyn<'py, f32>>(),
    ) {
        let (n, d, v) = dims_of(xa.shape(), wa.shape())?;
        let (h, w) = (contiguous("input", &xa)?, contiguous("weight", &wa)?);
        let g = on_gpu(py, || {
            Ok(if with_grad {
                gpu.linear_cross_entropy_with_grad(h, w, b, n, d, v, t, &options)?
            } else {
                let (loss, lse) =
                    gpu.linear_cross_entropy_with_lse(h, w, b, n, d, v, t, &options)?;
                logdomain::LinearCrossEntropyGrads {
                    loss,
                    lse,
                    d_hidden: vec![],
                    d_weight: vec![],
                    d_bias: None,
                }
            })
        })
        .or_py(py)?;
        (g, (n, d, v))
    } else if let (Ok(xa), Ok(wa)) = (
        x.extract::<PyReadonlyArrayDyn<'py, f16>>(),
        weight.extract::<PyReadonlyArrayDyn<'py, f16>>(),
    ) {
        let (n, d, v) = dims_of(xa.shape(), wa.shape())?;
        let (h, w) = (contiguous("input", &xa)?, contiguous("weight", &wa)?);
        let g = on_gpu(py, || {
            Ok(if with_grad {
                gpu.linear_cross_entropy_with_grad_f16(h, w, b, n, d, v, t, &options)?
            } else {
                let loss = gpu.linear_cross_entropy_f16(h, w, b, n, d, v, t, &options)?;
                logdomain::LinearCrossEntropyGrads {
                    loss,
                    lse: vec![],
                    d_hidden: vec![],
                    d_weight: vec![],
                    d_bias: None,
                }
            })
        })
        .or_py(py)?;
        (g, (n, d, v))
    } else {
        return Err(PyTypeError::new_err(
            "input and weight must both be float32 or both float16 ndarrays",
        ));
    };
    let loss = PyArray1::from_vec(py, grads.loss);
    let lse = PyArray1::from_vec(py, grads.lse);
    if !with_grad {
        return Ok((loss, lse).into_pyobject(py)?.into_any().unbind());
    }
    let dh = shaped(py, "d_input", (n, d), grads.d_hidden)?;
    let dw = shaped(py, "d_weight", (v, d), grads.d_weight)?;
    let db = grads.d_bias.map(|g| PyArray1::from_vec(py, g));
    Ok((loss, lse, dh, dw, db)
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

/// `F.binary_cross_entropy_with_logits` of C-contiguous (rows, cols) float32 arrays, with
/// `pos_weight` one per column.
#[pyfunction]
#[pyo3(signature = (device, x, target, pos_weight, reduction))]
fn bce_with_logits<'py>(
    py: Python<'py>,
    device: &Device,
    x: PyReadonlyArrayDyn<'py, f32>,
    target: PyReadonlyArrayDyn<'py, f32>,
    pos_weight: Option<PyReadonlyArray1<'py, f32>>,
    reduction: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let (rows, cols) = rows_cols("input", x.shape())?;
    let options = Bce {
        pos_weight: pos_weight
            .as_ref()
            .map(|w| contiguous("pos_weight", w).map(<[f32]>::to_vec))
            .transpose()?,
        reduction: self::reduction(reduction)?,
    };
    let (v, t) = (contiguous("input", &x)?, contiguous("target", &target)?);
    let gpu = &*device.gpu;
    let l = on_gpu(py, || {
        Ok(gpu.binary_cross_entropy_with_logits(v, t, rows, cols, &options)?)
    })
    .or_py(py)?;
    Ok(PyArray1::from_vec(py, l))
}

/// `F.gaussian_nll_loss` of flat float32 arrays (`var` one per element, or one).
#[pyfunction]
#[pyo3(signature = (device, input, target, var, full, eps, reduction))]
#[allow(clippy::too_many_arguments)] // PyTorch's options, one argument each
fn gaussian_nll<'py>(
    py: Python<'py>,
    device: &Device,
    input: PyReadonlyArray1<'py, f32>,
    target: PyReadonlyArray1<'py, f32>,
    var: PyReadonlyArray1<'py, f32>,
    full: bool,
    eps: f32,
    reduction: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let options = GaussianNll {
        full,
        eps,
        reduction: self::reduction(reduction)?,
    };
    let (x, t, v) = (
        contiguous("input", &input)?,
        contiguous("target", &target)?,
        contiguous("var", &var)?,
    );
    let gpu = &*device.gpu;
    let l = on_gpu(py, || Ok(gpu.gaussian_nll(x, t, v, &options)?)).or_py(py)?;
    Ok(PyArray1::from_vec(py, l))
}

/// `F.poisson_nll_loss` of flat float32 arrays.
#[pyfunction]
#[pyo3(signature = (device, input, target, log_input, full, eps, reduction))]
#[allow(clippy::too_many_arguments)] // PyTorch's options, one argument each
fn poisson_nll<'py>(
    py: Python<'py>,
    device: &Device,
    input: PyReadonlyArray1<'py, f32>,
    target: PyReadonlyArray1<'py, f32>,
    log_input: bool,
    full: bool,
    eps: f32,
    reduction: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let options = PoissonNll {
        log_input,
        full,
        eps,
        reduction: self::reduction(reduction)?,
    };
    let (x, t) = (contiguous("input", &input)?, contiguous("target", &target)?);
    let gpu = &*device.gpu;
    let l = on_gpu(py, || Ok(gpu.poisson_nll(x, t, &options)?)).or_py(py)?;
    Ok(PyArray1::from_vec(py, l))
}

/// A mixture as the crate takes it, from C-contiguous float32 arrays: `weights` (k), `means`
/// (k, dims) and `cov`, by `kind`: `"full"` the Cholesky factors of the precisions
/// (k, dims, dims), `"diag"` the variances (k, dims), `"spherical"` the variances (k).
fn mixture(
    kind: &str,
    weights: &PyReadonlyArray1<'_, f32>,
    means: &PyReadonlyArray2<'_, f32>,
    cov: &PyReadonlyArrayDyn<'_, f32>,
) -> PyResult<Gmm> {
    let cov_values = contiguous("cov", cov)?.to_vec();
    let covariance = match kind {
        "full" => Covariance::Full(cov_values),
        "diag" => Covariance::Diag(cov_values),
        "spherical" => Covariance::Spherical(cov_values),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown covariance kind {other:?}"
            )));
        }
    };
    Ok(Gmm {
        weights: contiguous("weights", weights)?.to_vec(),
        means: contiguous("means", means)?.to_vec(),
        covariance,
    })
}

/// The points (n, dims) of a mixture call as a slice, with n and dims.
fn points<'a>(x: &'a PyReadonlyArray2<'_, f32>) -> PyResult<(&'a [f32], usize, usize)> {
    Ok((contiguous("x", x)?, x.shape()[0], x.shape()[1]))
}

/// `log p(x)` of each row of the C-contiguous float32 points (n, dims) under the mixture
/// (`log_resp = False`, shape (n,)), or `log p(k | x)` (`log_resp = True`, shape (n, k)).
#[pyfunction]
#[pyo3(signature = (device, x, kind, weights, means, cov, log_resp))]
#[allow(clippy::too_many_arguments)] // the mixture's parameters, one array each
fn gmm_score<'py>(
    py: Python<'py>,
    device: &Device,
    x: PyReadonlyArray2<'py, f32>,
    kind: &str,
    weights: PyReadonlyArray1<'py, f32>,
    means: PyReadonlyArray2<'py, f32>,
    cov: PyReadonlyArrayDyn<'py, f32>,
    log_resp: bool,
) -> PyResult<Py<PyAny>> {
    let gmm = mixture(kind, &weights, &means, &cov)?;
    let (points, n, dims) = points(&x)?;
    let gpu = &*device.gpu;
    let k = gmm.weights.len();
    if log_resp {
        let v = on_gpu(py, || {
            Ok(gpu.gmm_log_responsibilities(points, n, dims, &gmm)?)
        })
        .or_py(py)?;
        Ok(shaped(py, "responsibilities", (n, k), v)?
            .into_any()
            .unbind())
    } else {
        let v = on_gpu(py, || Ok(gpu.gmm_score_samples(points, n, dims, &gmm)?)).or_py(py)?;
        Ok(PyArray1::from_vec(py, v).into_any().unbind())
    }
}

/// The most probable component of each point (`predict`: the argmax of the log-joint, the
/// first of equals), one GPU pass reading back `n` labels: `(n,)` int64.
#[pyfunction]
#[pyo3(signature = (device, x, kind, weights, means, cov))]
fn gmm_predict<'py>(
    py: Python<'py>,
    device: &Device,
    x: PyReadonlyArray2<'py, f32>,
    kind: &str,
    weights: PyReadonlyArray1<'py, f32>,
    means: PyReadonlyArray2<'py, f32>,
    cov: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Py<PyAny>> {
    let gmm = mixture(kind, &weights, &means, &cov)?;
    let (points, n, dims) = points(&x)?;
    let gpu = &*device.gpu;
    let labels = on_gpu(py, || Ok(gpu.gmm_predict(points, n, dims, &gmm)?)).or_py(py)?;
    let labels: Vec<i64> = labels.into_iter().map(i64::from).collect();
    Ok(PyArray1::from_vec(py, labels).into_any().unbind())
}

/// One E-step, reduced on the GPU: `(Σᵢ log p(xᵢ), Σᵢ rᵢₖ (k,), Σᵢ rᵢₖ (xᵢ − μ_k) (k, dims),
/// Σᵢ rᵢₖ (xᵢ − μ_k)² (k, dims), off-diagonal scatter (k, dims (dims − 1) / 2))` about the
/// mixture's own means; the scatter only with `scatter` (else (k, 0)).
#[pyfunction]
#[pyo3(signature = (device, x, kind, weights, means, cov, scatter))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)] // the E-step's sums, as a tuple
fn gmm_stats<'py>(
    py: Python<'py>,
    device: &Device,
    x: PyReadonlyArray2<'py, f32>,
    kind: &str,
    weights: PyReadonlyArray1<'py, f32>,
    means: PyReadonlyArray2<'py, f32>,
    cov: PyReadonlyArrayDyn<'py, f32>,
    scatter: bool,
) -> PyResult<(
    f64,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
)> {
    let gmm = mixture(kind, &weights, &means, &cov)?;
    let (points, n, dims) = points(&x)?;
    let gpu = &*device.gpu;
    let k = gmm.weights.len();
    let s = on_gpu(py, || {
        Ok(gpu.gmm_centered_stats(points, n, dims, &gmm, scatter)?)
    })
    .or_py(py)?;
    let pairs = s.cross.len().checked_div(k).unwrap_or(0);
    Ok((
        f64::from(s.log_likelihood),
        PyArray1::from_vec(py, s.resp_sums),
        shaped(py, "sum_dev", (k, dims), s.sum_dev)?,
        shaped(py, "sum_dev2", (k, dims), s.sum_dev2)?,
        shaped(py, "cross", (k, pairs), s.cross)?,
    ))
}

/// States of the log-sum-exp monoid as three arrays of one shape: `m`, `s` and `flags`.
type States<'py, D> = (
    Bound<'py, numpy::PyArray<f32, D>>,
    Bound<'py, numpy::PyArray<f32, D>>,
    Bound<'py, numpy::PyArray<u32, D>>,
);

fn states_out<'py>(
    py: Python<'py>,
    shape: &[usize],
    states: &[LseState],
) -> PyResult<States<'py, IxDyn>> {
    let m = states.iter().map(|st| st.m).collect();
    let s = states.iter().map(|st| st.s).collect();
    let flags = states.iter().map(|st| st.flags).collect();
    Ok((
        shaped(py, "states", IxDyn(shape), m)?,
        shaped(py, "states", IxDyn(shape), s)?,
        shaped(py, "states", IxDyn(shape), flags)?,
    ))
}

/// Each result's log-sum-exp over `axes` of a C-contiguous float32 array as a state of the
/// kernels' monoid (`Gpu::reduce_axes_partial`): `(m, s, flags)`, shaped as the result.
#[pyfunction]
#[pyo3(signature = (device, x, axes, keepdims))]
fn reduce_partial<'py>(
    py: Python<'py>,
    device: &Device,
    x: PyReadonlyArrayDyn<'py, f32>,
    axes: Option<Vec<isize>>,
    keepdims: bool,
) -> PyResult<States<'py, IxDyn>> {
    let axes = axes_of(axes);
    let shape = x.shape().to_vec();
    let v = contiguous("x", &x)?;
    let gpu = &*device.gpu;
    let (out_shape, states) = on_gpu(py, || {
        Ok(gpu.reduce_axes_partial(v, &shape, axes, keepdims)?)
    })
    .or_py(py)?;
    states_out(py, &out_shape, &states)
}

/// The states of three C-contiguous 1-D arrays of one length.
fn states_in(
    m: &PyReadonlyArray1<'_, f32>,
    s: &PyReadonlyArray1<'_, f32>,
    flags: &PyReadonlyArray1<'_, u32>,
) -> PyResult<Vec<LseState>> {
    let (m, s) = (contiguous("m", m)?, contiguous("s", s)?);
    let flags = contiguous("flags", flags)?;
    if s.len() != m.len() || flags.len() != m.len() {
        return Err(PyValueError::new_err(format!(
            "a state's m, s and flags have {}, {} and {} entries",
            m.len(),
            s.len(),
            flags.len()
        )));
    }
    Ok((0..m.len())
        .map(|i| LseState {
            m: m[i],
            s: s[i],
            flags: flags[i],
        })
        .collect())
}

fn states_1d<'py>(py: Python<'py>, states: &[LseState]) -> PyResult<States<'py, numpy::Ix1>> {
    Ok((
        PyArray1::from_iter(py, states.iter().map(|st| st.m)),
        PyArray1::from_iter(py, states.iter().map(|st| st.s)),
        PyArray1::from_iter(py, states.iter().map(|st| st.flags)),
    ))
}

/// `a[i].combine(b[i])` for 1-D states of one length: the kernels' merge (`LseState::combine`).
#[pyfunction]
#[pyo3(signature = (m1, s1, flags1, m2, s2, flags2))]
#[allow(clippy::too_many_arguments)] // two states, three arrays each
fn lse_combine<'py>(
    py: Python<'py>,
    m1: PyReadonlyArray1<'py, f32>,
    s1: PyReadonlyArray1<'py, f32>,
    flags1: PyReadonlyArray1<'py, u32>,
    m2: PyReadonlyArray1<'py, f32>,
    s2: PyReadonlyArray1<'py, f32>,
    flags2: PyReadonlyArray1<'py, u32>,
) -> PyResult<States<'py, numpy::Ix1>> {
    let a = states_in(&m1, &s1, &flags1)?;
    let b = states_in(&m2, &s2, &flags2)?;
    if a.len() != b.len() {
        return Err(PyValueError::new_err(format!(
            "states of {} and {} entries",
            a.len(),
            b.len()
        )));
    }
    let merged: Vec<LseState> =
        py.detach(|| a.iter().zip(&b).map(|(x, y)| x.combine(*y)).collect());
    states_1d(py, &merged)
}

/// The log-sum-exp of 1-D states (`LseState::logsumexp`).
#[pyfunction]
fn lse_result<'py>(
    py: Python<'py>,
    m: PyReadonlyArray1<'py, f32>,
    s: PyReadonlyArray1<'py, f32>,
    flags: PyReadonlyArray1<'py, u32>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let states = states_in(&m, &s, &flags)?;
    let out: Vec<f32> = py.detach(|| states.iter().map(|st| st.logsumexp()).collect());
    Ok(PyArray1::from_vec(py, out))
}

/// `softmax` (`func = "softmax"`) or `log_softmax` of each entry `x[i]` of the set the state
/// `i` summarises (1-D, one length), as the kernels finish them.
#[pyfunction]
fn lse_entries<'py>(
    py: Python<'py>,
    func: &str,
    x: PyReadonlyArray1<'py, f32>,
    m: PyReadonlyArray1<'py, f32>,
    s: PyReadonlyArray1<'py, f32>,
    flags: PyReadonlyArray1<'py, u32>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let states = states_in(&m, &s, &flags)?;
    let x = contiguous("x", &x)?;
    if x.len() != states.len() {
        return Err(PyValueError::new_err(format!(
            "{} entries and {} states",
            x.len(),
            states.len()
        )));
    }
    let log = match func {
        "log_softmax" => true,
        "softmax" => false,
        other => return Err(PyValueError::new_err(format!("unknown function {other:?}"))),
    };
    let out: Vec<f32> = py.detach(|| {
        x.iter()
            .zip(&states)
            .map(|(&v, st)| {
                if log {
                    log_softmax_entry(*st, ld_log1p(st.s), v)
                } else {
                    softmax_entry(*st, 1.0 + st.s, v)
                }
            })
            .collect()
    });
    Ok(PyArray1::from_vec(py, out))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // A panic of the crate or of a dependency is caught (`on_gpu`) and raised as a
    // DeviceError carrying its message; the hook keeps the message and prints nothing.
    std::panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
    }));
    m.add_class::<Device>()?;
    m.add("NoAdapterError", m.py().get_type::<NoAdapterError>())?;
    m.add("DeviceError", m.py().get_type::<DeviceError>())?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_function(wrap_pyfunction!(reduce, m)?)?;
    m.add_function(wrap_pyfunction!(reduce_masked, m)?)?;
    m.add_function(wrap_pyfunction!(reduce_weighted, m)?)?;
    m.add_function(wrap_pyfunction!(categorical, m)?)?;
    m.add_function(wrap_pyfunction!(cross_entropy_probs, m)?)?;
    m.add_function(wrap_pyfunction!(linear_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(logit_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(bce_with_logits, m)?)?;
    m.add_function(wrap_pyfunction!(gaussian_nll, m)?)?;
    m.add_function(wrap_pyfunction!(poisson_nll, m)?)?;
    m.add_function(wrap_pyfunction!(gmm_score, m)?)?;
    m.add_function(wrap_pyfunction!(gmm_predict, m)?)?;
    m.add_function(wrap_pyfunction!(gmm_stats, m)?)?;
    m.add_function(wrap_pyfunction!(reduce_partial, m)?)?;
    m.add_function(wrap_pyfunction!(lse_combine, m)?)?;
    m.add_function(wrap_pyfunction!(lse_result, m)?)?;
    m.add_function(wrap_pyfunction!(lse_entries, m)?)?;
    Ok(())
}
