"""logdomain on Dask arrays: reductions and losses whose chunks run on the workers' GPUs.

Every function returns a Dask array (nothing is computed until the caller asks) and runs each
chunk's kernel on the worker that holds the chunk, on that worker process's default device
(:func:`logdomain.default_device`, created once per process; ``WGPU_BACKEND`` and
``WGPU_ADAPTER_NAME`` in the worker's environment choose its adapter).

* :func:`logsumexp` is a Dask reduction: a chunk's log-sum-exp is a state of the kernels' monoid
  (:func:`logdomain.lse_state`) and the states are merged with the kernels' combine
  (:func:`logdomain.lse_merge`), so a reduced axis may span any number of chunks and the result
  equals the in-memory one within the accuracy contract.
* :func:`softmax` and :func:`log_softmax` are that reduction (kept as states) and then one
  ``map_blocks`` pass finishing each entry as the kernels do.
* The losses are their per-sample values per chunk and, for ``'sum'`` and ``'mean'``, a sum
  over the chunks in float64 (PyTorch's denominators for ``'mean'``).

Needs Dask (``pip install 'dask[array]'``); ``dask.distributed`` for clusters.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

try:
    import dask.array as da
except ImportError as e:  # pragma: no cover - exercised only without Dask
    raise ImportError(
        "logdomain.dask needs Dask; install it with `pip install 'dask[array]'`"
    ) from e

from . import _losses
from ._special import axes_of
from ._states import STATE_DTYPE, lse_entries, lse_finish, lse_merge_along, lse_state

__all__ = [
    "logsumexp",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "gaussian_nll_loss",
    "poisson_nll_loss",
]


def _meta(ndim: int, dtype: Any = np.float32) -> np.ndarray:
    """An empty array of the output's kind, so that Dask does not call a kernel to learn it."""
    return np.empty((0,) * ndim, dtype=dtype)


def _axes(axis: Any, ndim: int) -> Tuple[int, ...]:
    """SciPy's ``axis`` as a tuple of non-negative axes (None: all of them)."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(axes_of(axis, ndim))


# --- the chunked log-sum-exp: chunk, combine and aggregate of a Dask reduction ---------------


def _chunk_state(block, axis=None, keepdims=True, **_):
    if block.size == 0:  # Dask's probe of the output type, and empty chunks: the identity
        shape = [1 if i in axis else n for i, n in enumerate(block.shape)]
        return np.zeros(shape, STATE_DTYPE)
    return lse_state(block, axis=axis, keepdims=True)


def _merge_states(states, axis=None, keepdims=True, **_):
    return lse_merge_along(states, axis)


def _finish_block(states):
    return np.asarray(lse_finish(states), dtype=np.float32)


def _states(x, axes, split_every):
    """The monoid's state of each result (the reduced axes kept with size one): a Dask
    reduction whose chunk step is the GPU kernel and whose combine is the kernels' merge."""
    return da.reduction(
        x,
        chunk=_chunk_state,
        combine=_merge_states,
        aggregate=_merge_states,
        axis=axes,
        keepdims=True,
        dtype=STATE_DTYPE,
        split_every=split_every,
        concatenate=True,
        meta=_meta(x.ndim, STATE_DTYPE),
    )


def _lse(x, axes, keepdims, split_every):
    lse = _states(x, axes, split_every).map_blocks(
        _finish_block, dtype=np.float32, meta=_meta(x.ndim)
    )
    return lse if keepdims else da.squeeze(lse, axis=axes)


def _signed_finish(pos, neg):
    """``log(P - N)`` of the log-sums ``pos = log P`` and ``neg = log N``: NaN where the sum is
    negative or undefined (inf - inf), -inf where it is zero."""
    p = np.asarray(pos, np.float64)
    n = np.asarray(neg, np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.where(p > n, p + np.log1p(-np.exp(n - p)), np.nan)
        out = np.where(n == -np.inf, p, diff)
        out = np.where((p == n) & np.isfinite(p), -np.inf, out)
        out = np.where(np.isnan(p) | np.isnan(n), np.nan, out)
    return out.astype(np.float32)


def _shifted(x, b, sign):
    """``x + ln|b|`` where ``b`` has the sign ``sign``, else -inf (absent), in float64."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.asarray(x, np.float64) + np.log(np.abs(np.asarray(b, np.float64)))
    keep = (b > 0) if sign > 0 else (b < 0)
    return np.where(keep, v, -np.inf)


def logsumexp(x, axis=None, keepdims=False, b=None, *, split_every=None):
    """``scipy.special.logsumexp`` of a Dask array, as a Dask reduction.

    Parameters
    ----------
    x : dask.array.Array or array_like
        The input; any chunking, any number of chunks along the reduced axes.
    axis : None or int or tuple of ints, optional
        The axes reduced (None: all), negative axes counting from the last.
    keepdims : bool, optional
        Keep the reduced axes as dimensions of size one.
    b : dask.array.Array or array_like, optional
        Scale factors for ``exp(x)``, broadcast against ``x``. Entries with ``b == 0`` are
        ignored; a negative sum gives NaN (SciPy without ``return_sign``). The positive and
        negative parts are reduced as two log-sum-exps of ``x + ln|b|`` (formed in float64,
        then read in float32) and subtracted in float64.
    split_every : int or dict, optional
        Dask's fan-in of the tree of merges.

    Returns
    -------
    dask.array.Array
        float32, SciPy's shape.

    Examples
    --------
    >>> import dask.array as da, logdomain.dask
    >>> x = da.zeros((1000, 4), chunks=(100, 4), dtype="float32")
    >>> logdomain.dask.logsumexp(x, axis=0).compute()  # log 1000
    array([6.9077554, 6.9077554, 6.9077554, 6.9077554], dtype=float32)
    """
    x = da.asarray(x)
    axes = _axes(axis, x.ndim)
    if b is None:
        return _lse(x, axes, keepdims, split_every)
    b = da.asarray(b)
    shape = np.broadcast_shapes(x.shape, b.shape)
    x = da.broadcast_to(x, shape)
    b = da.broadcast_to(b, shape).rechunk(x.chunks)
    axes = _axes(axis, len(shape))
    parts = [
        _lse(
            da.map_blocks(_shifted, x, b, sign, dtype=np.float64, meta=_meta(x.ndim, np.float64)),
            axes,
            keepdims,
            split_every,
        )
        for sign in (1, -1)
    ]
    return da.map_blocks(_signed_finish, *parts, dtype=np.float32, meta=_meta(parts[0].ndim))


def _normalised(func, x, axis, split_every):
    x = da.asarray(x)
    axes = _axes(axis, x.ndim)
    states = _states(x, axes, split_every)
    return da.map_blocks(lse_entries, func, x, states, dtype=np.float32, meta=_meta(x.ndim))


def softmax(x, axis=None, *, split_every=None):
    """``scipy.special.softmax`` of a Dask array along axes that may span many chunks.

    The log-sum-exp reduction of :func:`logsumexp`, kept as the monoid's states, then one
    ``map_blocks`` pass computing ``exp(x - m) / (1 + s)`` per entry as the kernels do (SciPy's
    special values: NaN for a set with a NaN or a +inf, 0 for -inf entries).

    Parameters
    ----------
    x : dask.array.Array or array_like
    axis : None or int or tuple of ints, optional
        The axes the softmax normalises over (None: all).
    split_every : int or dict, optional
        Dask's fan-in of the tree of merges.

    Returns
    -------
    dask.array.Array
        float32, the shape and chunks of ``x``.
    """
    return _normalised("softmax", x, axis, split_every)


def log_softmax(x, axis=None, *, split_every=None):
    """``scipy.special.log_softmax`` of a Dask array along axes that may span many chunks:
    ``(x - m) - log1p(s)`` per entry after the reduction (see :func:`softmax`).

    Parameters
    ----------
    x : dask.array.Array or array_like
    axis : None or int or tuple of ints, optional
        The axes the log-softmax normalises over (None: all).
    split_every : int or dict, optional
        Dask's fan-in of the tree of merges.

    Returns
    -------
    dask.array.Array
        float32, the shape and chunks of ``x``.
    """
    return _normalised("log_softmax", x, axis, split_every)


# --- losses ------------------------------------------------------------------------------------


def _reduced(per, reduction, denominator=None):
    """PyTorch's reduction of per-sample losses over all chunks, summed in float64."""
    if reduction == "none":
        return per
    total = per.sum(dtype=np.float64)
    if reduction == "mean":
        den = per.size if denominator is None else denominator.sum(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total / den
    return total.astype(np.float32)


def _elementwise(loss, reduction, x, *others, **options):
    """An element-wise loss: the in-memory ``loss`` with ``reduction='none'`` on each chunk of
    ``x`` and the arrays ``others`` (chunked as ``x``), then the reduction over all chunks."""
    per = da.map_blocks(
        loss, x, *others, reduction="none", dtype=np.float32, meta=_meta(x.ndim), **options
    )
    return _reduced(per, reduction)


def _categorical(name, input, target, weight, ignore_index, reduction, label_smoothing):
    reduction = _losses._reduction(reduction)
    x = da.asarray(input)
    if x.ndim < 2:
        raise ValueError(
            f"logdomain.dask.{name} takes batched input (N, C, d1, ..., dk); an unbatched "
            f"input is one sample: use logdomain.{name}"
        )
    x = x.rechunk({1: -1})
    t = da.asarray(target)
    ind = tuple(range(x.ndim))
    probabilities = t.dtype.kind == "f"
    t_ind = ind if probabilities else (0,) + ind[2:]
    t = t.rechunk(x.chunks if probabilities else x.chunks[:1] + x.chunks[2:])
    w = None if weight is None else np.asarray(weight)
    options = dict(weight=w, ignore_index=ignore_index, reduction="none")
    if name == "cross_entropy":
        options["label_smoothing"] = label_smoothing
    per = da.blockwise(
        _losses.cross_entropy if name == "cross_entropy" else _losses.nll_loss,
        (0,) + ind[2:],
        x,
        ind,
        t,
        t_ind,
        dtype=np.float32,
        concatenate=True,
        meta=_meta(x.ndim - 1),
        **options,
    )
    if reduction != "mean" or probabilities:
        return _reduced(per, reduction)
    den = t.map_blocks(_target_weights, w, ignore_index, dtype=np.float64)
    return _reduced(per, reduction, den)


def _target_weights(t, weight, ignore_index):
    """Each class-index target's share of the mean's denominator: its class weight (1 without
    weights), 0 where ignored."""
    t = np.asarray(t)
    keep = t != ignore_index
    if weight is None:
        return keep.astype(np.float64)
    idx = np.where(keep, t, 0)
    return np.where(keep, np.asarray(weight, np.float64)[idx], 0.0)


def cross_entropy(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """``torch.nn.functional.cross_entropy`` of Dask arrays: :func:`logdomain.cross_entropy`
    per chunk (the class axis 1 made one chunk), then PyTorch's reduction over all chunks.

    Parameters
    ----------
    input : dask.array.Array
        Logits (N, C) or (N, C, d1, ..., dk), chunked along any axes but the class axis.
    target : dask.array.Array or array_like
        Class indices (N, d1, ..., dk) or probabilities of the input's shape; rechunked to
        the input's chunks.
    weight, ignore_index, reduction, label_smoothing
        As :func:`logdomain.cross_entropy`.

    Returns
    -------
    dask.array.Array
        0-d float32 for ``'sum'`` and ``'mean'`` (the sum over the chunks taken in float64),
        the targets' shape for ``'none'``.
    """
    return _categorical(
        "cross_entropy", input, target, weight, ignore_index, reduction, label_smoothing
    )


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """``torch.nn.functional.nll_loss`` of Dask arrays (log-probabilities, class indices),
    as :func:`cross_entropy`."""
    return _categorical("nll_loss", input, target, weight, ignore_index, reduction, 0.0)


def _like(v, x):
    """``v`` broadcast to the shape and chunks of the Dask array ``x``."""
    return da.broadcast_to(da.asarray(v), x.shape).rechunk(x.chunks)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """``torch.nn.functional.binary_cross_entropy_with_logits`` of Dask arrays, element-wise
    per chunk (:func:`logdomain.binary_cross_entropy_with_logits`), then the reduction.

    ``weight`` broadcasts against the input; ``pos_weight`` (one per class, the last axis)
    makes the last axis one chunk."""
    reduction = _losses._reduction(reduction)
    x = da.asarray(input)
    if pos_weight is not None:
        x = x.rechunk({x.ndim - 1: -1})
    weights = [] if weight is None else [_like(weight, x)]
    return _elementwise(
        _losses.binary_cross_entropy_with_logits,
        reduction,
        x,
        _like(target, x),
        *weights,
        pos_weight=None if pos_weight is None else np.asarray(pos_weight),
    )


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """``torch.nn.functional.gaussian_nll_loss`` of Dask arrays, element-wise per chunk, then
    the reduction. ``var`` takes PyTorch's shapes (the input's, with its last axis 1 or
    without it, or a float)."""
    reduction = _losses._reduction(reduction)
    x = da.asarray(input)
    t = _like(target, x)
    if np.ndim(var) == 0 and not isinstance(var, da.Array):
        v = _like(np.float32(var), x)
    else:
        v = da.asarray(var)
        if v.ndim == x.ndim - 1 and x.ndim > 0:
            v = v[..., None]
        v = _like(v, x)
    return _elementwise(_losses.gaussian_nll_loss, reduction, x, t, v, full=full, eps=eps)


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean"):
    """``torch.nn.functional.poisson_nll_loss`` of Dask arrays, element-wise per chunk, then
    the reduction."""
    reduction = _losses._reduction(reduction)
    x = da.asarray(input)
    return _elementwise(
        _losses.poisson_nll_loss,
        reduction,
        x,
        _like(target, x),
        log_input=log_input,
        full=full,
        eps=eps,
    )
