"""PyTorch's losses (``torch.nn.functional``) on the GPU, on NumPy arrays."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _native
from ._device import Device, resolve
from ._special import broadcasts, contiguous, float_input, out_dtype

__all__ = [
    "cross_entropy",
    "cross_entropy_with_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "gaussian_nll_loss",
    "poisson_nll_loss",
]

_REDUCTIONS = ("none", "mean", "sum")


def _reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction!r} is not a valid value for reduction")
    return reduction


def _finish(loss: np.ndarray, shape: Tuple[int, ...], reduction: str, dtype: type) -> Any:
    """The native result (one value, or one per sample) shaped as PyTorch's: 0-d results as
    NumPy scalars."""
    loss = loss.reshape(shape if reduction == "none" else ())
    return loss.astype(dtype, copy=False)[()]


def _reduce64(per: np.ndarray, reduction: str, denominator: float, dtype: type) -> Any:
    """A NumPy reduction of per-sample losses (float64), for the options the kernels do not
    take (a BCE ``weight``, probability targets)."""
    if reduction == "none":
        return per.astype(dtype)
    total = per.sum(dtype=np.float64)
    if reduction == "mean":
        total = total / denominator if denominator else np.float64(np.nan)
    return np.asarray(total).astype(dtype)[()]


class _Categorical:
    """The input of a categorical loss as PyTorch reads it: (C,) unbatched, (N, C) or
    (N, C, d1, ..., dk) with the classes on axis 1; as rows of classes for the kernels."""

    def __init__(self, input: Any, weight: Any):
        x = float_input("input", input)
        if x.ndim == 0:
            raise ValueError("input must have at least one dimension (the classes)")
        self.x = x
        self.dtype = out_dtype(x)
        self.class_axis = 0 if x.ndim == 1 else 1
        self.classes = x.shape[self.class_axis]
        # The shape of the per-sample losses, that is of class-index targets.
        self.sample_shape = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
        self.weight = None
        if weight is not None:
            w = np.asarray(weight)
            if w.shape != (self.classes,):
                raise ValueError(
                    "weight tensor should be defined either for all "
                    f"{self.classes} classes or no classes but got weight tensor of shape: "
                    f"{list(w.shape)}"
                )
            self.weight = contiguous(float_input("weight", w), np.float32)

    def rows(self, dtype: Optional[type] = None) -> np.ndarray:
        """The input as C-contiguous (samples, classes) rows (the gradient kernels' layout; the
        losses read (N, C, d1, ..., dk) in place)."""
        x = self.x if self.x.ndim > 1 else self.x[None, :]
        x = np.moveaxis(x, 1, -1).reshape(-1, self.classes)
        return contiguous(x, dtype)

    def from_rows(self, grad: np.ndarray) -> np.ndarray:
        """A (samples, classes) array back in the input's layout."""
        if self.x.ndim == 1:
            return grad.reshape(self.classes)
        moved = grad.reshape(self.x.shape[:1] + self.x.shape[2:] + (self.classes,))
        return np.moveaxis(moved, -1, 1)

    def indices(self, target: Any) -> np.ndarray:
        t = np.asarray(target)
        if t.dtype.kind not in "iu":
            raise TypeError(f"class-index targets must be integers, not {t.dtype}")
        if t.shape != self.sample_shape:
            raise ValueError(f"Expected target size {list(self.sample_shape)}, got {list(t.shape)}")
        return contiguous(t.reshape(-1), np.int64)

    def probability_targets(self, target: Any) -> np.ndarray:
        """Class probabilities as given, checked to have the input's shape."""
        t = float_input("target", target)
        if t.shape != self.x.shape:
            raise ValueError(
                f"probability targets must have the input's shape {list(self.x.shape)}, "
                f"got {list(t.shape)}"
            )
        return t

    def probabilities(self, target: Any, label_smoothing: float) -> np.ndarray:
        """Class probabilities in float64, label smoothing applied (the gradient's path)."""
        t = self.probability_targets(target).astype(np.float64)
        if label_smoothing > 0:
            t = t * (1.0 - label_smoothing) + label_smoothing / self.classes
        return t

    def class_weights(self) -> np.ndarray:
        """The class weights broadcasting along the class axis (1 where there are none)."""
        if self.weight is None:
            return np.ones((), np.float64)
        shape = (self.classes,) + (1,) * (self.x.ndim - 1 - self.class_axis)
        return self.weight.astype(np.float64).reshape(shape)


def _is_probabilities(target: Any) -> bool:
    return np.asarray(target).dtype.kind == "f"


def _has_extras(z_loss: float, softcap: Optional[float], target: Any) -> bool:
    """Whether the z-loss or the soft cap is asked for (then the targets must be indices)."""
    if float(z_loss) == 0.0 and softcap is None:
        return False
    if _is_probabilities(target):
        raise ValueError("z_loss and softcap take class-index targets, not probabilities")
    return True


def _with_extras(dev, c, rows, target, args, with_grad: bool) -> Any:
    """The cross-entropy of `rows` (the input as (samples, classes)) with the z-loss and the
    soft cap; `args` = (ignore_index, label_smoothing, reduction, z_loss, softcap)."""
    ignore_index, label_smoothing, reduction, z_loss, softcap = args
    return _native.logit_cross_entropy(
        dev,
        rows,
        c.indices(target),
        c.weight,
        int(ignore_index),
        label_smoothing,
        reduction,
        float(z_loss),
        softcap,
        with_grad,
    )


def _check_smoothing(label_smoothing: float) -> float:
    s = float(label_smoothing)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {s}")
    return s


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    device: Optional[Device] = None,
) -> Any:
    """Compute the cross entropy loss between input logits and target.

    ``torch.nn.functional.cross_entropy`` on NumPy arrays, with PyTorch's signature, defaults
    and semantics.

    Parameters
    ----------
    input : array_like
        Unnormalised logits: (C,) unbatched, (N, C), or (N, C, d1, ..., dk) with the classes
        on axis 1. float32 and float16 are read as they are; float64 and integers are
        converted to float32.
    target : array_like
        Class indices (integers; shape (), (N,) or (N, d1, ..., dk)), or class probabilities
        (floating point, the input's shape).
    weight : array_like, optional
        A weight per class, shape (C,).
    ignore_index : int, optional
        Class-index targets equal to it contribute nothing, to the loss nor to the mean's
        denominator. Default -100.
    reduction : {'mean', 'sum', 'none'}, optional
        'mean' divides by the summed weights of the non-ignored targets (class indices) or by
        the number of samples (probabilities); 'none' returns one loss per sample.
    label_smoothing : float, optional
        In [0, 1]: the target becomes ``(1 - eps) * target + eps / C``.
    z_loss : float, optional
        Not PyTorch's: ``z_loss * w_t * lse**2`` is added to each sample's loss (PaLM's
        auxiliary loss, Liger-Kernel's ``lse_square_scale``), ``lse`` the log-sum-exp of its
        (capped) logits. Class-index targets only. Default 0.
    softcap : float, optional
        Not PyTorch's: each logit ``z`` becomes ``softcap * tanh(z / softcap)`` before the
        softmax (Gemma-2's soft cap). Class-index targets only. Default None (no cap).
    device : Device, optional
        The device to run on; the default device if None.

    Returns
    -------
    loss : numpy scalar or ndarray
        float32 (float16 for float16 input); with ``reduction='none'`` the targets' shape.

    Raises
    ------
    ValueError
        For a target outside [0, C) that is not `ignore_index`, or shapes that do not match.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> round(float(logdomain.cross_entropy(np.zeros((1, 2), np.float32), np.array([1]))), 6)
    0.693147
    """
    reduction = _reduction(reduction)
    label_smoothing = _check_smoothing(label_smoothing)
    c = _Categorical(input, weight)
    dev = resolve(device)
    if _has_extras(z_loss, softcap, target):
        args = (ignore_index, label_smoothing, reduction, z_loss, softcap)
        loss = _with_extras(dev, c, c.rows(), target, args, False)
        return _finish(loss, c.sample_shape, reduction, c.dtype)
    if _is_probabilities(target):
        t = c.probability_targets(target)
        loss = _native.cross_entropy_probs(
            dev,
            contiguous(c.x, np.float32),
            contiguous(t, np.float32),
            c.weight,
            label_smoothing,
            reduction,
        )
        return _finish(loss, c.sample_shape, reduction, c.dtype)
    t = c.indices(target)
    loss = _native.categorical(
        dev,
        "cross_entropy",
        contiguous(c.x),
        t,
        c.weight,
        int(ignore_index),
        label_smoothing,
        reduction,
        False,
    )
    return _finish(loss, c.sample_shape, reduction, c.dtype)


def cross_entropy_with_grad(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    device: Optional[Device] = None,
) -> Tuple[Any, np.ndarray]:
    """Compute the cross entropy loss and its gradient with respect to the logits, fused.

    :func:`cross_entropy` (same arguments and semantics) together with ``d loss / d input``
    (for ``reduction='none'``, of the sum of the losses), from one pass over the logits per
    row for the loss and one for the gradient.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, device
        As for :func:`cross_entropy`. The input is computed in float32.

    Returns
    -------
    loss : numpy scalar or ndarray
        As :func:`cross_entropy` returns it, float32.
    grad : ndarray
        float32, the input's shape: ``s * w_t * (softmax(x) - smoothed one-hot)`` with
        ``s = 1 / sum of the weights`` for a mean. Ignored samples get 0.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> loss, grad = logdomain.cross_entropy_with_grad(np.zeros((1, 2), np.float32), np.array([1]))
    >>> grad.tolist()
    [[0.5, -0.5]]
    """
    reduction = _reduction(reduction)
    label_smoothing = _check_smoothing(label_smoothing)
    c = _Categorical(input, weight)
    dev = resolve(device)
    if _has_extras(z_loss, softcap, target):
        args = (ignore_index, label_smoothing, reduction, z_loss, softcap)
        loss, grad = _with_extras(dev, c, c.rows(np.float32), target, args, True)
        return _finish(loss, c.sample_shape, reduction, np.float32), c.from_rows(grad)
    if _is_probabilities(target):
        t = c.probabilities(target, label_smoothing)
        x = c.x.astype(np.float32, copy=False)
        logp = _native.reduce(dev, "log_softmax", x, [c.class_axis], False).astype(np.float64)
        w = c.class_weights()
        per = np.asarray(-(t * logp * w).sum(axis=c.class_axis))
        # d/dx_j of -sum_c w_c t_c log p_c is p_j * sum_c w_c t_c - w_j t_j.
        wt = t * w
        grad = np.exp(logp) * wt.sum(axis=c.class_axis, keepdims=True) - wt
        if reduction == "mean":
            grad = grad / per.size if per.size else grad * np.nan
        loss = _reduce64(per, reduction, per.size, np.float32)
        return loss, grad.astype(np.float32)
    t = c.indices(target)
    loss, grad = _native.categorical(
        dev,
        "cross_entropy",
        c.rows(np.float32),
        t,
        c.weight,
        int(ignore_index),
        label_smoothing,
        reduction,
        True,
    )
    return _finish(loss, c.sample_shape, reduction, np.float32), c.from_rows(grad)


def nll_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    *,
    device: Optional[Device] = None,
) -> Any:
    """Compute the negative log likelihood loss.

    ``torch.nn.functional.nll_loss`` on NumPy arrays: ``-w_t * input[t]`` per sample, with
    PyTorch's signature, defaults and semantics.

    Parameters
    ----------
    input : array_like
        Log-probabilities: (C,), (N, C) or (N, C, d1, ..., dk), classes on axis 1.
    target : array_like of int
        Class indices, shape (), (N,) or (N, d1, ..., dk).
    weight, ignore_index, reduction, device
        As for :func:`cross_entropy`.

    Returns
    -------
    loss : numpy scalar or ndarray
        float32 (float16 for float16 input); with ``reduction='none'`` the target's shape.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> float(logdomain.nll_loss(np.log(np.array([[0.25, 0.75]], np.float32)), np.array([0])))
    1.3862943649291992
    """
    reduction = _reduction(reduction)
    c = _Categorical(input, weight)
    t = c.indices(target)
    loss = _native.categorical(
        resolve(device),
        "nll_loss",
        contiguous(c.x),
        t,
        c.weight,
        int(ignore_index),
        0.0,
        reduction,
        False,
    )
    return _finish(loss, c.sample_shape, reduction, c.dtype)


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
    *,
    device: Optional[Device] = None,
) -> Any:
    """Compute the binary cross entropy between target and input logits.

    ``torch.nn.functional.binary_cross_entropy_with_logits`` on NumPy arrays:
    ``-(pos_weight * y * log sigmoid(x) + (1 - y) * log(1 - sigmoid(x)))``, computed stably
    from the logits, with PyTorch's signature and defaults.

    Parameters
    ----------
    input : array_like
        Logits of any shape; computed in float32.
    target : array_like
        The input's shape, values in [0, 1].
    weight : array_like, optional
        A rescaling weight, broadcast against the input.
    reduction : {'mean', 'sum', 'none'}, optional
        Default 'mean'.
    pos_weight : array_like, optional
        A weight of positive examples, broadcast against the input (commonly one per class,
        on the last axis).
    device : Device, optional
        The device to run on; the default device if None.

    Returns
    -------
    loss : numpy scalar or ndarray
        float32 (float16 for float16 input); with ``reduction='none'`` the input's shape.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> round(float(logdomain.binary_cross_entropy_with_logits(np.zeros(2), np.ones(2))), 6)
    0.693147
    """
    reduction = _reduction(reduction)
    x = float_input("input", input)
    dtype = out_dtype(x)
    t = float_input("target", target)
    if t.shape != x.shape:
        raise ValueError(
            f"Target size ({tuple(t.shape)}) must be the same as input size ({tuple(x.shape)})"
        )
    shape = x.shape
    n = x.size
    # The kernel's rows × columns form: columns along the last axis.
    cols = shape[-1] if x.ndim else 1
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if x.ndim else 1
    pw = None
    if pos_weight is not None:
        p = float_input("pos_weight", pos_weight)
        if not broadcasts(p.shape, shape):
            raise ValueError(
                f"pos_weight of shape {p.shape} does not broadcast to the input's shape {shape}"
            )
        core = p.shape[next((i for i, d in enumerate(p.shape) if d != 1), p.ndim) :]
        if len(core) <= 1:
            # One weight per column (or one for all).
            pw = np.broadcast_to(p.reshape(core or (1,)), (cols,))
        else:
            # A weight per entry: the array as one row of n columns.
            rows, cols = 1, n
            pw = np.broadcast_to(p, shape).reshape(-1)
        pw = contiguous(pw, np.float32)
    x2 = contiguous(x, np.float32).reshape(rows, cols)
    t2 = contiguous(t, np.float32).reshape(rows, cols)
    dev = resolve(device)
    if weight is None:
        loss = _native.bce_with_logits(dev, x2, t2, pw, reduction)
        return _finish(loss, shape, reduction, dtype)
    w = float_input("weight", weight)
    if not broadcasts(w.shape, shape):
        raise ValueError(
            f"weight of shape {w.shape} does not broadcast to the input's shape {shape}"
        )
    per = _native.bce_with_logits(dev, x2, t2, pw, "none").reshape(shape)
    per = per.astype(np.float64) * w.astype(np.float64)
    return _reduce64(per, reduction, per.size, dtype)


def _broadcast_to_input(name: str, v: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    if not broadcasts(v.shape, shape):
        raise ValueError(
            f"{name} of shape {v.shape} does not broadcast to the input's shape {shape}"
        )
    return contiguous(np.broadcast_to(v, shape), np.float32).reshape(-1)


def gaussian_nll_loss(
    input: Any,
    target: Any,
    var: Any,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
    *,
    device: Optional[Device] = None,
) -> Any:
    """Compute the Gaussian negative log likelihood loss.

    ``torch.nn.functional.gaussian_nll_loss`` on NumPy arrays:
    ``0.5 * (log(max(var, eps)) + (input - target)**2 / max(var, eps))`` (plus
    ``0.5 * log(2 pi)`` if `full`), with PyTorch's signature, defaults and shape rules.

    Parameters
    ----------
    input : array_like
        Expectations, (N, *) or (*); computed in float32.
    target : array_like
        The input's shape, or one that broadcasts to it.
    var : array_like or float
        Variances: the input's shape, the input's shape without its last axis, that shape
        with a last axis of 1 (one variance per sample), or a scalar (one shared).
        Negative entries are an error.
    full : bool, optional
        Include the constant term. Default False.
    eps : float, optional
        Variances are clamped to at least `eps`. Default 1e-6.
    reduction : {'mean', 'sum', 'none'}, optional
        Default 'mean'.
    device : Device, optional
        The device to run on; the default device if None.

    Returns
    -------
    loss : numpy scalar or ndarray
        float32 (float16 for float16 input); with ``reduction='none'`` the input's shape.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> float(logdomain.gaussian_nll_loss(np.zeros(3), np.ones(3), np.ones(3)))
    0.5
    """
    reduction = _reduction(reduction)
    x = float_input("input", input)
    dtype = out_dtype(x)
    shape = x.shape
    v = float_input("var", var)
    if v.ndim > 0 and v.shape != shape:
        if shape[:-1] == v.shape:
            v = v[..., None]
        elif not (shape[:-1] == v.shape[:-1] and v.shape[-1:] == (1,)):
            raise ValueError("var is of incorrect size")
    if np.any(v < 0):
        raise ValueError("var has negative entry/entries")
    t = _broadcast_to_input("target", float_input("target", target), shape)
    xs = contiguous(x, np.float32).reshape(-1)
    vs = (
        contiguous(v, np.float32).reshape(1)
        if v.ndim == 0 and x.size != 1
        else _broadcast_to_input("var", v, shape)
    )
    loss = _native.gaussian_nll(resolve(device), xs, t, vs, bool(full), float(eps), reduction)
    return _finish(loss, shape, reduction, dtype)


def poisson_nll_loss(
    input: Any,
    target: Any,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: str = "mean",
    *,
    device: Optional[Device] = None,
) -> Any:
    """Compute the Poisson negative log likelihood loss.

    ``torch.nn.functional.poisson_nll_loss`` on NumPy arrays: ``exp(input) - target * input``
    if `log_input`, else ``input - target * log(input + eps)``, plus Stirling's approximation
    of ``log(target!)`` where ``target > 1`` if `full`; PyTorch's signature and defaults.

    Parameters
    ----------
    input : array_like
        Log-rates (or rates if not `log_input`); computed in float32.
    target : array_like
        Counts, broadcasting to the input's shape.
    log_input, full, eps, reduction
        PyTorch's options and defaults.
    device : Device, optional
        The device to run on; the default device if None.

    Returns
    -------
    loss : numpy scalar or ndarray
        float32 (float16 for float16 input); with ``reduction='none'`` the input's shape.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> float(logdomain.poisson_nll_loss(np.zeros(2), np.ones(2)))
    1.0
    """
    reduction = _reduction(reduction)
    x = float_input("input", input)
    dtype = out_dtype(x)
    t = _broadcast_to_input("target", float_input("target", target), x.shape)
    xs = contiguous(x, np.float32).reshape(-1)
    loss = _native.poisson_nll(
        resolve(device), xs, t, bool(log_input), bool(full), float(eps), reduction
    )
    return _finish(loss, x.shape, reduction, dtype)


def _linear_args(input: Any, weight: Any, target: Any, bias: Any, class_weight: Any):
    """The operands of the fused linear cross-entropy as the bindings read them: input (N, D)
    and weight (V, D) both float16 or both float32, int64 targets (N,), float32 bias (V,)."""
    x = float_input("input", input)
    w = float_input("weight", weight)
    if x.dtype != w.dtype:
        x, w = x.astype(np.float32), w.astype(np.float32)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(
            f"input must be (N, D) and weight (V, D) with the same D, got {list(x.shape)} "
            f"and {list(w.shape)}"
        )
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"class-index targets must be integers, not {t.dtype}")
    if t.shape != (x.shape[0],):
        raise ValueError(f"Expected target size [{x.shape[0]}], got {list(t.shape)}")
    vocab = w.shape[0]

    def vector(name: str, a: Any) -> Optional[np.ndarray]:
        if a is None:
            return None
        v = contiguous(float_input(name, a), np.float32)
        if v.shape != (vocab,):
            raise ValueError(f"{name} must have shape [{vocab}], got {list(v.shape)}")
        return v

    return (
        contiguous(x),
        contiguous(w),
        contiguous(t, np.int64),
        vector("bias", bias),
        vector("class_weight", class_weight),
    )


def linear_cross_entropy(
    input: Any,
    weight: Any,
    target: Any,
    bias: Any = None,
    class_weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    device: Optional[Device] = None,
) -> Any:
    """Compute the cross entropy of a linear classifier head without its logits.

    ``F.cross_entropy(input @ weight.T + bias, target, class_weight, ...)`` with PyTorch's
    semantics, computed tile by tile on the GPU: no (N, V) array of logits is ever made, so a
    vocabulary of 10^5 classes over 10^4 tokens needs megabytes, not gigabytes.

    Parameters
    ----------
    input : array_like
        Hidden states, (N, D). float32 or float16 (with a float16 weight); other dtypes are
        converted to float32.
    weight : array_like
        The classifier's weight, (V, D), as ``torch.nn.Linear`` stores it.
    target : array_like
        Class indices, (N,), integers.
    bias : array_like, optional
        The classifier's bias, (V,).
    class_weight : array_like, optional
        A weight per class, (V,) (``F.cross_entropy``'s ``weight``).
    ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy`.
    z_loss : float, optional
        ``z_loss * lse**2`` is added to each token's loss (PaLM's auxiliary loss), weighted
        by the token's class weight. Default 0.
    softcap : float, optional
        Soft-cap the logits to ``softcap * tanh(z / softcap)`` before the softmax (Gemma-2).
    device : Device, optional
        The device to run on; the default device if None.

    Returns
    -------
    loss : numpy scalar or ndarray
        float32; with ``reduction='none'`` one loss per token.

    Raises
    ------
    ValueError
        For shapes that do not match, a target outside [0, V) that is not `ignore_index`, or
        options out of range.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> h, w = np.ones((2, 3), np.float32), np.zeros((4, 3), np.float32)
    >>> round(float(logdomain.linear_cross_entropy(h, w, np.array([0, 3]))), 6)
    1.386294
    """
    reduction = _reduction(reduction)
    label_smoothing = _check_smoothing(label_smoothing)
    x, w, t, b, cw = _linear_args(input, weight, target, bias, class_weight)
    loss, _lse = _native.linear_cross_entropy(
        resolve(device),
        x,
        w,
        t,
        b,
        cw,
        int(ignore_index),
        label_smoothing,
        reduction,
        float(z_loss),
        None if softcap is None else float(softcap),
        False,
        False,
    )
    return _finish(loss, (x.shape[0],), reduction, np.float32)


def linear_cross_entropy_with_grad(
    input: Any,
    weight: Any,
    target: Any,
    bias: Any = None,
    class_weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    grad_filter: bool = False,
    device: Optional[Device] = None,
) -> Tuple[Any, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Compute the fused linear cross entropy and its gradients, without the logits.

    :func:`linear_cross_entropy` (same arguments and semantics) together with the gradients
    with respect to the input, the weight and the bias (for ``reduction='none'``, of the sum
    of the losses), recomputed tile by tile; deterministic (the same bits every run).

    Parameters
    ----------
    input, weight, target, bias, class_weight, ignore_index, reduction, label_smoothing
        As for :func:`linear_cross_entropy`.
    z_loss, softcap, device
        As for :func:`linear_cross_entropy`.
    grad_filter : bool, optional
        Cut Cross-Entropy's gradient filtering: skip blocks of the gradient whose softmax
        entries are all below 2**-24 (no effect with label smoothing). Default False.

    Returns
    -------
    loss : numpy scalar or ndarray
        As :func:`linear_cross_entropy` returns it.
    d_input : ndarray
        float32, (N, D).
    d_weight : ndarray
        float32, (V, D).
    d_bias : ndarray or None
        float32, (V,), where a bias was given.

    Examples
    --------
    >>> import numpy as np, logdomain
    >>> h, w = np.ones((2, 3), np.float32), np.zeros((4, 3), np.float32)
    >>> loss, dh, dw, db = logdomain.linear_cross_entropy_with_grad(h, w, np.array([0, 3]))
    >>> dh.shape, dw.shape, db is None
    ((2, 3), (4, 3), True)
    """
    reduction = _reduction(reduction)
    label_smoothing = _check_smoothing(label_smoothing)
    x, w, t, b, cw = _linear_args(input, weight, target, bias, class_weight)
    loss, _lse, dh, dw, db = _native.linear_cross_entropy(
        resolve(device),
        x,
        w,
        t,
        b,
        cw,
        int(ignore_index),
        label_smoothing,
        reduction,
        float(z_loss),
        None if softcap is None else float(softcap),
        bool(grad_filter),
        True,
    )
    return _finish(loss, (x.shape[0],), reduction, np.float32), dh, dw, db
