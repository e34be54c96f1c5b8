"""SciPy's ``logsumexp``, ``softmax`` and ``log_softmax`` on the GPU."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._device import Device, resolve

try:  # NumPy >= 2.0
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # NumPy 1.25, 1.26
    from numpy.core.numeric import normalize_axis_tuple  # type: ignore[no-redef]

__all__ = ["logsumexp", "softmax", "log_softmax"]

Axis = Union[None, int, Sequence[int]]


def contiguous(a: Any, dtype: Any = None) -> np.ndarray:
    """``a`` as a C-contiguous, aligned array (of ``dtype``), copied only where it is not one
    already. (``np.ascontiguousarray`` keeps a misaligned array, such as one deserialized from
    a byte buffer, and the bindings read aligned arrays only.)"""
    return np.require(a, dtype=dtype, requirements=["C", "A"])


def float_input(name: str, a: Any) -> np.ndarray:
    """``a`` as an array the kernels read: float32 and float16 as they are, other real dtypes
    (float64, integers, bool) converted to float32."""
    a = np.asarray(a)
    if a.dtype in (np.float32, np.float16):
        return a
    if a.dtype.kind in "fiub":
        return a.astype(np.float32)
    raise TypeError(
        f"{name} has dtype {a.dtype}; logdomain computes real floating point "
        "(float32 and float16 natively, float64 and integers converted to float32)"
    )


def out_dtype(*arrays: np.ndarray) -> type:
    """float16 where every input is float16 (as SciPy and PyTorch keep it), else float32."""
    return np.float16 if all(a.dtype == np.float16 for a in arrays) else np.float32


def readable_in_place(a: np.ndarray) -> np.ndarray:
    """``a`` itself where the kernels can read it through its strides (aligned, non-negative
    strides of whole entries), else a C-contiguous copy."""
    item = a.itemsize
    if a.flags.aligned and all(s >= 0 and s % item == 0 for s in a.strides):
        return a
    return contiguous(a)


def axes_of(axis: Axis, ndim: int) -> Optional[List[int]]:
    """SciPy's ``axis`` as non-negative axes (None: all), with NumPy's errors: ``AxisError``
    out of range, ``ValueError`` for a repeated axis, ``TypeError`` for a non-integer."""
    if axis is None:
        return None
    try:
        return list(normalize_axis_tuple(axis, ndim))
    except ValueError as e:
        if isinstance(e, IndexError):  # AxisError
            raise
        raise ValueError("duplicate value in 'axis'") from None


def broadcasts(shape: Tuple[int, ...], to: Tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``to`` (without growing it)."""
    try:
        return np.broadcast_shapes(shape, to) == tuple(to)
    except ValueError:
        return False


def _scalar(r: np.ndarray) -> Any:
    # SciPy returns 0-d results as NumPy scalars.
    return r[()]


def _mask(where: Any, shape: Tuple[int, ...]) -> np.ndarray:
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"where must be an array of bool, not of {w.dtype}")
    if not broadcasts(w.shape, shape):
        raise ValueError(
            f"where of shape {w.shape} does not broadcast to the input's shape {shape}"
        )
    return contiguous(w)


def _apply(func: str, x: Any, axis: Axis, where: Any, device: Optional[Device]) -> Any:
    a = float_input("x", x)
    dev = resolve(device)
    axes = axes_of(axis, a.ndim)
    dtype = out_dtype(a)
    if where is None:
        r = _native.reduce(dev, func, readable_in_place(a), axes, False)
    else:
        w = _mask(where, a.shape)
        r = _native.reduce_masked(dev, func, contiguous(a, np.float32), w, axes, False)
    return _scalar(r.astype(dtype, copy=False))


def logsumexp(
    a: Any,
    axis: Axis = None,
    b: Any = None,
    keepdims: bool = False,
    return_sign: bool = False,
    *,
    where: Any = None,
    device: Optional[Device] = None,
) -> Any:
    """Compute the log of the sum of exponentials of input elements.

    ``scipy.special.logsumexp`` on the GPU, with SciPy's signature and semantics, plus JAX's
    ``where=``. Each result is ``max + log1p(sum of the others' exp(x - max))``, from a tree
    reduction, so it is deterministic and finite wherever the true value is.

    Parameters
    ----------
    a : array_like
        Input array. float32 and float16 are read as they are (float16 decoded exactly to
        float32 on the GPU); float64, integer and bool inputs are converted to float32 and
        computed in float32. Strided views are read in place through their strides where
        they are aligned and non-negative; other arrays are copied first.
    axis : None or int or tuple of ints, optional
        Axis or axes over which the sum is taken; by default (None) all elements are summed.
        Negative axes count from the last.
    b : array_like, optional
        Scaling factor for exp(`a`), broadcast against `a` as NumPy broadcasts. Entries with
        ``b == 0`` are ignored, even where `a` is inf or NaN. Computed in float32.
    keepdims : bool, optional
        If True, the reduced axes are left in the result as dimensions with size one.
    return_sign : bool, optional
        If True, return ``(log|sum|, sign)``, the sign +1, -1 or 0 (NaN for a NaN result).
        If False, a negative sum gives NaN (as in SciPy).
    where : array_like of bool, optional
        JAX's ``where=``: the elements to include, broadcast against `a`. An excluded element
        is absent whatever it holds; a result with no element included is -inf.
    device : Device, optional
        The device to run on; the default device if None.

    Returns
    -------
    res : ndarray or numpy scalar
        float32 (float16 where `a` and `b` are float16). A 0-d result is returned as a NumPy
        scalar, as SciPy returns it.
    sgn : ndarray or numpy scalar
        The signs, if `return_sign` is True.

    Notes
    -----
    Accuracy: each result is within a few float32 ulps of the float64 log-sum-exp of the
    same float32 values (the test suite's bound is ``6u(|max| + log1p term) + 2^-126`` with
    ``u = 2^-24``); float64 inputs are first rounded to float32. Special values follow SciPy:
    any NaN gives NaN, +inf gives +inf, an all -inf or empty reduction gives -inf.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> float(logdomain.logsumexp(np.zeros(4, np.float32)))  # log 4
    1.3862943649291992
    """
    x = float_input("a", a)
    dev = resolve(device)
    if b is None and not return_sign:
        axes = axes_of(axis, x.ndim)
        dtype = out_dtype(x)
        if where is None:
            r = _native.reduce(dev, "logsumexp", readable_in_place(x), axes, keepdims)
        else:
            w = _mask(where, x.shape)
            r = _native.reduce_masked(
                dev, "logsumexp", contiguous(x, np.float32), w, axes, keepdims
            )
        return _scalar(r.astype(dtype, copy=False))
    # The weighted kernel: SciPy's b and its signs. where= is b = 0 at the excluded entries,
    # which the kernel ignores whatever the entry holds.
    if b is None:
        bb = np.ones((), np.float32)
        dtype = out_dtype(x)
    else:
        bb = float_input("b", b)
        dtype = out_dtype(x, bb)
        shape = np.broadcast_shapes(x.shape, bb.shape)
        if shape != x.shape:
            x = np.broadcast_to(x, shape)
    if where is not None:
        w = _mask(where, x.shape)
        bb = np.where(w, bb, np.float32(0))
    axes = axes_of(axis, x.ndim)
    log, sign = _native.reduce_weighted(
        dev,
        contiguous(x, np.float32),
        contiguous(bb, np.float32),
        axes,
        keepdims,
    )
    if not return_sign:
        log = np.where(sign < 0, np.float32(np.nan), log)
        return _scalar(log.astype(dtype, copy=False))
    return _scalar(log.astype(dtype, copy=False)), _scalar(sign.astype(dtype, copy=False))


def softmax(
    x: Any, axis: Axis = None, *, where: Any = None, device: Optional[Device] = None
) -> Any:
    """Compute the softmax function.

    ``scipy.special.softmax`` on the GPU: ``exp(x - logsumexp(x, axis))`` in division form
    (``exp(x - max) / sum``), with SciPy's signature, plus JAX's ``where=``.

    Parameters
    ----------
    x : array_like
        Input array; float32 and float16 as they are, float64, integers and bool converted to
        float32. Strided views are read in place where their strides allow.
    axis : None or int or tuple of ints, optional
        Axis or axes to normalise over; None (the default) normalises over the whole array.
    where : array_like of bool, optional
        The elements to include, broadcast against `x`; excluded elements get 0.
    device : Device, optional
        The device to run on; the default device if None.

    Returns
    -------
    s : ndarray or numpy scalar
        Same shape as `x`, float32 (float16 for float16 input); along `axis` the values sum
        to 1 within a few float32 ulps.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> logdomain.softmax(np.array([0.0, 0.0], np.float32)).tolist()
    [0.5, 0.5]
    """
    return _apply("softmax", x, axis, where, device)


def log_softmax(
    x: Any, axis: Axis = None, *, where: Any = None, device: Optional[Device] = None
) -> Any:
    """Compute the logarithm of the softmax function.

    ``scipy.special.log_softmax`` on the GPU: ``x - logsumexp(x, axis)``, with SciPy's
    signature, plus JAX's ``where=``.

    Parameters
    ----------
    x : array_like
        Input array; float32 and float16 as they are, float64, integers and bool converted to
        float32. Strided views are read in place where their strides allow.
    axis : None or int or tuple of ints, optional
        Axis or axes to normalise over; None (the default) normalises over the whole array.
    where : array_like of bool, optional
        The elements to include, broadcast against `x`; excluded elements get -inf.
    device : Device, optional
        The device to run on; the default device if None.

    Returns
    -------
    s : ndarray or numpy scalar
        Same shape as `x`, float32 (float16 for float16 input).

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> print(logdomain.log_softmax(np.array([0.0, 0.0], np.float32)))
    [-0.6931472 -0.6931472]
    """
    return _apply("log_softmax", x, axis, where, device)
