"""The log-sum-exp monoid's states, for engines that carry partial results (Dask, MPI, ...).

A state summarises a set of values as the kernels do: ``m`` the largest finite value, ``s``
the sum of ``exp(x - m)`` over the finite values other than one instance of ``m``, and
``flags`` recording whether a finite value (1), a NaN (2) or a +inf (4) was seen; ``-inf``
entries are absent. ``logsumexp = m + log1p(s)``. States of disjoint pieces of the same sets
merge with the kernels' own combine (run on the host, in float32, as the kernels' mirror), so
a reduction split into any chunks gives the one-shot result within the accuracy contract, and
the same bits for the same chunks merged in the same order.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _native
from ._device import Device, resolve
from ._special import Axis, axes_of, contiguous, float_input

__all__ = ["STATE_DTYPE", "lse_state", "lse_merge", "lse_finish"]

#: The state's record: 12 bytes, the layout of the Rust crate's ``LseState``.
STATE_DTYPE = np.dtype([("m", "<f4"), ("s", "<f4"), ("flags", "<u4")])


def _as_state(state: Any, name: str = "state") -> np.ndarray:
    state = np.asarray(state)
    if state.dtype != STATE_DTYPE:
        raise TypeError(
            f"{name} has dtype {state.dtype}; states are arrays of logdomain.STATE_DTYPE, "
            "as lse_state returns them"
        )
    return state


def _fields(state: np.ndarray):
    flat = contiguous(state).reshape(-1)
    return (
        contiguous(flat["m"]),
        contiguous(flat["s"]),
        contiguous(flat["flags"]),
    )


def _pack(m: np.ndarray, s: np.ndarray, flags: np.ndarray, shape) -> np.ndarray:
    out = np.empty(shape, STATE_DTYPE)
    out["m"] = np.reshape(m, shape)
    out["s"] = np.reshape(s, shape)
    out["flags"] = np.reshape(flags, shape)
    return out


def lse_state(
    a: Any, axis: Axis = None, keepdims: bool = False, *, device: Optional[Device] = None
) -> np.ndarray:
    """The log-sum-exp of ``a`` over ``axis`` as mergeable states, on the GPU.

    Parameters
    ----------
    a : array_like
        Input array; float32 as it is, float16, float64, integers and bool converted to
        float32.
    axis : None or int or tuple of ints, optional
        The axes reduced, as in :func:`logsumexp` (None: all).
    keepdims : bool, optional
        Keep the reduced axes as dimensions of size one.
    device : Device, optional
        The device to run on; the default device if None.

    Returns
    -------
    state : ndarray of STATE_DTYPE
        One state per result, shaped as ``logsumexp(a, axis, keepdims=keepdims)``; fields
        ``m`` (float32), ``s`` (float32) and ``flags`` (uint32).

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> x = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> top, bottom = logdomain.lse_state(x[:2], axis=0), logdomain.lse_state(x[2:], axis=0)
    >>> print(logdomain.lse_finish(logdomain.lse_merge(top, bottom)))
    [4.1429315 5.1429315]
    """
    x = float_input("a", a)
    x = contiguous(x, dtype=np.float32)
    m, s, flags = _native.reduce_partial(resolve(device), x, axes_of(axis, x.ndim), keepdims)
    return _pack(m, s, flags, m.shape)


def lse_merge(*states: Any) -> np.ndarray:
    """Merge states of disjoint pieces of the same sets, element-wise (broadcasting).

    ``lse_merge(a, b, c)`` is ``combine(combine(a, b), c)``: the kernels' merge, in this
    order. Merging is commutative bit for bit and associative up to rounding.

    Parameters
    ----------
    *states : ndarray of STATE_DTYPE
        At least one; broadcast against each other as NumPy broadcasts.

    Returns
    -------
    state : ndarray of STATE_DTYPE
    """
    if not states:
        raise TypeError("lse_merge needs at least one state")
    arrays = [_as_state(st, f"states[{i}]") for i, st in enumerate(states)]
    arrays = np.broadcast_arrays(*arrays)
    shape = arrays[0].shape
    acc = _fields(arrays[0])
    for other in arrays[1:]:
        acc = _native.lse_combine(*acc, *_fields(other))
    return _pack(*acc, shape)


def lse_merge_along(state: Any, axis: Any) -> np.ndarray:
    """Merge the states along ``axis`` (an int or a tuple), in index order, keeping the axes
    as dimensions of size one: the combine step of a chunked reduction."""
    state = _as_state(state)
    axes = axes_of(axis, state.ndim) or []
    for ax in axes:
        n = state.shape[ax]
        if n == 0:
            empty = list(state.shape)
            empty[ax] = 1
            state = np.zeros(empty, STATE_DTYPE)
            continue
        parts = [np.take(state, [i], axis=ax) for i in range(n)]
        state = lse_merge(*parts) if n > 1 else parts[0]
    return state


def lse_finish(state: Any) -> Any:
    """The log-sum-exp of each state: ``m + log1p(s)``, with SciPy's special values (NaN if a
    NaN was seen, +inf if a +inf was, -inf for an empty set).

    Parameters
    ----------
    state : ndarray of STATE_DTYPE

    Returns
    -------
    lse : ndarray of float32, or a NumPy scalar for a 0-d state
    """
    state = _as_state(state)
    out = _native.lse_result(*_fields(state)).reshape(state.shape)
    return out[()] if out.ndim == 0 else out


def lse_entries(func: str, x: np.ndarray, state: np.ndarray) -> np.ndarray:
    """``softmax`` or ``log_softmax`` of the entries ``x`` of the sets ``state`` summarises
    (broadcast against ``x``), as the kernels finish them: the second pass of a chunked
    softmax."""
    x = contiguous(float_input("x", x), dtype=np.float32)
    state = np.broadcast_to(_as_state(state), x.shape)
    out = _native.lse_entries(func, x.reshape(-1), *_fields(state))
    return out.reshape(x.shape)
