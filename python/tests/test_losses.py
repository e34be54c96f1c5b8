"""PyTorch's losses against their formulas (torch.nn.functional's documentation), evaluated in
float64 on the same float32 values; bounds are formulas of float32's unit roundoff U."""

import numpy as np
import pytest
import scipy.special as sp

import logdomain

from conftest import TINY, U, assert_close


def ce_reference(x, t, weight=None, ignore_index=-100, reduction="mean", eps=0.0):
    """F.cross_entropy with class indices: x is (N, C, d...) or (C,), in float64."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x, t = x[None], np.asarray(t)[None]
    c = x.shape[1]
    logp = np.moveaxis(sp.log_softmax(x, axis=1), 1, -1).reshape(-1, c)
    t = np.asarray(t).reshape(-1)
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    keep = t != ignore_index
    tt = np.where(keep, t, 0)
    nll = np.where(keep, -w[tt] * logp[np.arange(len(tt)), tt], 0.0)
    smooth = np.where(keep, -(logp * w / c).sum(axis=1), 0.0)
    per = (1 - eps) * nll + eps * smooth
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    den = w[tt][keep].sum()
    return per.sum() / den if den else np.nan


def ce_bound(x, t, weight=None, ignore_index=-100, reduction="mean", eps=0.0):
    """8U per sample times w·(|max| + |x_t| + |lse - max| + 2) (each log-softmax term's
    rounding), summed for a reduction and divided as the mean divides, plus 4U log2(N) of the
    result for the tree sum."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x, t = x[None], np.asarray(t)[None]
    c = x.shape[1]
    rows = np.moveaxis(x, 1, -1).reshape(-1, c)
    size = np.abs(rows).max(axis=1) * 2 + np.abs(sp.logsumexp(rows, axis=1) - rows.max(axis=1)) + 2
    w = np.ones(c) if weight is None else np.abs(np.asarray(weight, np.float64))
    t = np.asarray(t).reshape(-1)
    keep = t != ignore_index
    per = 8 * U * size * w.max() * keep + TINY
    if reduction == "none":
        return per
    ref = abs(
        ce_reference(x, t.reshape(x.shape[:1] + x.shape[2:]), weight, ignore_index, reduction, eps)
    )
    total = per.sum() + 4 * U * np.log2(max(len(t), 2)) * ref * (1 if reduction == "sum" else 0)
    if reduction == "sum":
        return total
    den = (
        np.ones(c)[np.where(keep, t, 0)][keep].sum()
        if weight is None
        else w[np.where(keep, t, 0)][keep].sum()
    )
    return total / den + 4 * U * np.log2(max(len(t), 2)) * ref + TINY


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(7,), (16, 7), (4, 7, 3), (2, 7, 3, 5)])
def test_cross_entropy_class_indices(device, rng, shape, reduction):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    t = rng.integers(0, shape[-1] if len(shape) == 1 else shape[1], size=tshape)
    w = rng.random(7).astype(np.float32) + 0.5
    if t.size > 1:
        t.reshape(-1)[1] = -100
    for weight, eps in [(None, 0.0), (w, 0.0), (w, 0.2), (None, 0.1)]:
        got = logdomain.cross_entropy(
            x, t, weight=weight, reduction=reduction, label_smoothing=eps, device=device
        )
        ref = ce_reference(x, t, weight, -100, reduction, eps)
        assert np.shape(got) == np.shape(ref.reshape(tshape) if reduction == "none" else ref)
        bound = ce_bound(x, t, weight, -100, reduction, eps)
        assert_close(
            np.reshape(got, -1),
            np.reshape(ref, -1),
            np.reshape(bound, -1),
            f"{weight is None} {eps}",
        )


def test_cross_entropy_matches_pytorch_documented_values(device):
    # F.cross_entropy(torch.zeros(1, 2), torch.tensor([1])) = log 2; ignore_index everywhere
    # gives NaN for a mean and 0 for a sum.
    assert abs(logdomain.cross_entropy(np.zeros((1, 2)), [1]) - np.log(2)) < 1e-7
    t = np.array([-100, -100])
    assert np.isnan(logdomain.cross_entropy(np.zeros((2, 3)), t))
    assert logdomain.cross_entropy(np.zeros((2, 3)), t, reduction="sum") == 0.0
    t = np.array([5, 2])
    assert (
        logdomain.cross_entropy(np.zeros((2, 3)), t, ignore_index=5, reduction="none").tolist()[0]
        == 0.0
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_probabilities(device, rng, reduction):
    x = (rng.standard_normal((5, 6, 4)) * 3).astype(np.float32)
    p = rng.random((5, 6, 4))
    p /= p.sum(axis=1, keepdims=True)
    w = rng.random(6) + 0.5
    for weight, eps in [(None, 0.0), (w, 0.3)]:
        got = logdomain.cross_entropy(x, p, weight=weight, reduction=reduction, label_smoothing=eps)
        pt = p * (1 - eps) + eps / 6
        ww = np.ones(6) if weight is None else weight.astype(np.float32).astype(np.float64)
        per = -(pt * sp.log_softmax(x.astype(np.float64), axis=1) * ww[:, None]).sum(axis=1)
        ref = {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]
        scale = np.abs(x).max() * 2 + 4
        bound = 16 * U * scale * (per.size if reduction == "sum" else 1) * ww.max() + TINY
        assert_close(got, ref, bound)


def test_cross_entropy_with_grad(device, rng):
    x = (rng.standard_normal((3, 5, 4)) * 2).astype(np.float32)
    t = rng.integers(0, 5, size=(3, 4))
    t[0, 0] = -100
    w = (rng.random(5) + 0.5).astype(np.float32)
    for reduction in ("mean", "sum", "none"):
        loss, grad = logdomain.cross_entropy_with_grad(
            x, t, weight=w, reduction=reduction, label_smoothing=0.1
        )
        assert grad.shape == x.shape and grad.dtype == np.float32
        ref_loss = logdomain.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=0.1)
        np.testing.assert_array_equal(loss, ref_loss)
        # The gradient of the (summed) loss by central differences of the f64 reference.
        x64 = x.astype(np.float64)
        num = np.zeros_like(x64)
        h = 1e-6
        w64 = w.astype(np.float64)

        def total(z, w64=w64, reduction=reduction):
            return np.sum(ce_reference(z, t, w64, -100, reduction, 0.1))

        for i in np.ndindex(x.shape):
            d = np.zeros_like(x64)
            d[i] = h
            num[i] = (total(x64 + d) - total(x64 - d)) / (2 * h)
        assert_close(grad, num, 1e-5 + 1e-4 * np.abs(num))
        assert np.all(grad[0, :, 0] == 0)  # the ignored sample


def ce_extras_reference(x, t, weight, ignore_index, reduction, eps, z_loss, softcap):
    """cross_entropy with the z-loss and the soft cap in float64: (loss, dloss/dx)."""
    x = np.asarray(x, np.float64)
    c = x.shape[1]
    z = np.moveaxis(x, 1, -1).reshape(-1, c)
    zc = softcap * np.tanh(z / softcap) if softcap is not None else z
    lse = sp.logsumexp(zc, axis=1)
    t = np.asarray(t).reshape(-1)
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    keep = t != ignore_index
    tt = np.where(keep, t, 0)
    wy = np.where(keep, w[tt], 0.0)
    rows = np.arange(len(tt))
    per = (
        (1 - eps) * wy * (lse - zc[rows, tt])
        + eps / c * np.where(keep, (w * (lse[:, None] - zc)).sum(axis=1), 0.0)
        + z_loss * wy * lse**2
    )
    scale = 1.0 / wy.sum() if reduction == "mean" else 1.0
    a = (1 - eps) * wy + eps / c * w.sum() * keep + 2 * z_loss * wy * lse
    g = a[:, None] * np.exp(zc - lse[:, None]) - eps / c * w[None, :] * keep[:, None]
    g[rows, tt] -= (1 - eps) * wy
    if softcap is not None:
        g *= 1 - (zc / softcap) ** 2
    g *= scale
    grad = np.moveaxis(g.reshape(x.shape[:1] + x.shape[2:] + (c,)), -1, 1)
    loss = {"none": per, "sum": per.sum(), "mean": per.sum() * scale}[reduction]
    return loss, grad


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(16, 9), (3, 8, 5), (2, 9, 3, 4)])
def test_cross_entropy_z_loss_and_softcap(device, rng, shape, reduction):
    """The extras (not PyTorch's; Liger-Kernel's and Gemma-2's) on every input layout: the
    loss and its gradient against the float64 formula."""
    x = (rng.standard_normal(shape) * 20).astype(np.float32)
    c = shape[1]
    t = rng.integers(0, c, size=shape[:1] + shape[2:])
    t.reshape(-1)[0] = -1
    w = (rng.random(c) + 0.5).astype(np.float32)
    for weight, eps, z_loss, cap in [
        (None, 0.0, 1e-3, None),
        (w, 0.1, 1e-2, 15.0),
        (w, 0.0, 0.0, 3.0),
    ]:
        kw = dict(weight=weight, ignore_index=-1, reduction=reduction, label_smoothing=eps)
        ref, ref_grad = ce_extras_reference(x, t, weight, -1, reduction, eps, z_loss, cap)
        got = logdomain.cross_entropy(x, t, z_loss=z_loss, softcap=cap, device=device, **kw)
        loss, grad = logdomain.cross_entropy_with_grad(
            x, t, z_loss=z_loss, softcap=cap, device=device, **kw
        )
        np.testing.assert_array_equal(loss, got)
        assert np.shape(got) == np.shape(ref.reshape(t.shape) if reduction == "none" else ref)
        # The capped logits' lse is at most |cap| + log C (or the logits' own); each term's
        # rounding is a few U of it, times the weights, the z-loss's 2 |lse| more.
        lse_size = np.abs(x).max() + np.log(c) + 2
        per = 16 * U * lse_size * (1 + 2 * z_loss * lse_size) * w.max() + TINY
        n = t.size
        bound = {"none": per, "sum": per * n, "mean": per * n / (0.5 * (n - 1))}[reduction]
        assert_close(np.reshape(got, -1), np.reshape(ref, -1), bound, f"{eps} {z_loss} {cap}")
        assert grad.shape == x.shape
        assert_close(grad, ref_grad, 64 * U * (1 + 2 * z_loss * lse_size) * w.max() + TINY)
    # float16 logits are read as they are; probabilities do not take the extras.
    x16 = x.astype(np.float16)
    got16 = logdomain.cross_entropy(x16, t, ignore_index=-1, z_loss=1e-3, reduction=reduction)
    got32 = logdomain.cross_entropy(
        x16.astype(np.float32), t, ignore_index=-1, z_loss=1e-3, reduction=reduction
    )
    assert np.asarray(got16).dtype == np.float16
    np.testing.assert_array_equal(got16, np.asarray(got32).astype(np.float16))
    p = np.full(shape, 1.0 / c)
    with pytest.raises(ValueError, match="class-index targets"):
        logdomain.cross_entropy(x, p, softcap=5.0)
    with pytest.raises(ValueError, match="softcap"):
        logdomain.cross_entropy(x, t, ignore_index=-1, softcap=-1.0)


def test_cross_entropy_with_grad_probabilities(device, rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    p = sp.softmax(rng.standard_normal((4, 3)), axis=1)
    loss, grad = logdomain.cross_entropy_with_grad(x, p)
    ref = (sp.softmax(x.astype(np.float64), axis=1) - p) / 4
    assert_close(grad, ref, 1e-6)
    assert abs(loss - logdomain.cross_entropy(x, p)) <= 1e-6


def test_nll_loss(device, rng):
    x = sp.log_softmax(rng.standard_normal((6, 4, 3)), axis=1).astype(np.float32)
    t = rng.integers(0, 4, size=(6, 3))
    w = rng.random(4) + 0.5
    for reduction in ("mean", "sum", "none"):
        got = logdomain.nll_loss(x, t, weight=w, reduction=reduction)
        ww = w.astype(np.float32).astype(np.float64)
        per = -np.take_along_axis(x.astype(np.float64), t[:, None], axis=1)[:, 0] * ww[t]
        ref = {"none": per, "sum": per.sum(), "mean": per.sum() / ww[t].sum()}[reduction]
        assert_close(
            got,
            ref,
            8 * U * np.abs(ref) * 6
            + 8 * U * np.abs(x).max() * (per.size if reduction == "sum" else 1),
        )


def test_float16_losses(device, rng):
    x = rng.standard_normal((8, 5)).astype(np.float16)
    t = rng.integers(0, 5, size=8)
    got = logdomain.cross_entropy(x, t)
    assert isinstance(got, np.float16)
    ref = ce_reference(x.astype(np.float64), t)
    assert abs(float(got) - ref) <= 2.0**-11 * abs(ref) + 1e-5


def test_categorical_errors(device):
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"target 3 .* outside \[0, 3\)"):
        logdomain.cross_entropy(x, [0, 3])
    with pytest.raises(ValueError, match="outside"):
        logdomain.nll_loss(x, [-1, 0])
    with pytest.raises(ValueError, match="Expected target size"):
        logdomain.cross_entropy(x, [0, 1, 2])
    with pytest.raises(ValueError, match="weight tensor"):
        logdomain.cross_entropy(x, [0, 1], weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="reduction"):
        logdomain.cross_entropy(x, [0, 1], reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        logdomain.cross_entropy(x, [0, 1], label_smoothing=1.5)
    with pytest.raises(ValueError, match="input's shape"):
        logdomain.cross_entropy(x, np.zeros((2, 4)))
    with pytest.raises(ValueError):
        logdomain.cross_entropy(np.float32(1.0), 0)
    with pytest.raises(TypeError):
        logdomain.nll_loss(x, np.zeros(2, np.float32))


def bce_reference(x, y, weight=None, pos_weight=None):
    x = x.astype(np.float64)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    log_sig = -np.logaddexp(0, -x)
    log_one_minus = -np.logaddexp(0, x)
    per = -(pw * y * log_sig + (1 - y) * log_one_minus)
    return per if weight is None else per * weight


@pytest.mark.parametrize("shape", [(), (9,), (6, 4), (3, 2, 5)])
def test_bce_with_logits(device, rng, shape):
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    y = rng.random(shape).astype(np.float32)
    for weight, pos_weight in [
        (None, None),
        (None, rng.random(shape[-1:]) + 0.5),
        (rng.random(shape[-1:]), np.float32(2.0)),
        (rng.random(shape), rng.random(shape) + 0.5),
    ]:
        w = None if weight is None else np.asarray(weight, np.float32).astype(np.float64)
        p = None if pos_weight is None else np.asarray(pos_weight, np.float32).astype(np.float64)
        per = bce_reference(x, y.astype(np.float64), w, p)
        scale = (
            8
            * U
            * (np.abs(x.astype(np.float64)) + 2)
            * (1 if p is None else np.max(p) + 1)
            * (1 if w is None else np.max(w) + 1)
        )
        for reduction in ("none", "sum", "mean"):
            got = logdomain.binary_cross_entropy_with_logits(
                x, y, weight=weight, reduction=reduction, pos_weight=pos_weight
            )
            ref = {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]
            bound = {"none": scale, "sum": scale.sum(), "mean": scale.mean()}[reduction]
            assert_close(got, ref, bound + 8 * U * np.abs(ref) + TINY, f"{reduction}")


def test_bce_errors(device):
    with pytest.raises(ValueError, match="Target size"):
        logdomain.binary_cross_entropy_with_logits(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="pos_weight"):
        logdomain.binary_cross_entropy_with_logits(
            np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=np.ones(2)
        )


@pytest.mark.parametrize("var_shape", ["same", "no_last", "last_1", "scalar"])
def test_gaussian_nll(device, rng, var_shape):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y = rng.standard_normal((5, 4)).astype(np.float32)
    var = {
        "same": rng.random((5, 4)),
        "no_last": rng.random(5),
        "last_1": rng.random((5, 1)),
        "scalar": np.float64(0.7),
    }[var_shape].astype(np.float32)
    var_b = var[..., None] if var_shape == "no_last" else var
    v = np.maximum(np.broadcast_to(var_b, x.shape).astype(np.float64), 1e-6)
    for full in (False, True):
        per = 0.5 * (np.log(v) + (x.astype(np.float64) - y) ** 2 / v) + (
            0.5 * np.log(2 * np.pi) if full else 0
        )
        scale = 8 * U * (np.abs(np.log(v)) + (x.astype(np.float64) - y) ** 2 / v + 1)
        for reduction in ("none", "sum", "mean"):
            got = logdomain.gaussian_nll_loss(x, y, var, full=full, reduction=reduction)
            ref = {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]
            bound = {"none": scale, "sum": scale.sum(), "mean": scale.mean()}[reduction]
            assert_close(got, ref, bound + 4 * U * np.abs(ref) + TINY)


def test_gaussian_nll_errors(device):
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="var is of incorrect size"):
        logdomain.gaussian_nll_loss(x, x, np.ones((2, 2)))
    with pytest.raises(ValueError, match="negative"):
        logdomain.gaussian_nll_loss(x, x, -np.ones((3, 2)))


def test_poisson_nll(device, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    y = rng.poisson(2.0, size=(4, 6)).astype(np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    for log_input in (True, False):
        xi = x64 if log_input else np.abs(x64)
        xin = x if log_input else np.abs(x)
        per = np.exp(xi) - y64 * xi if log_input else xi - y64 * np.log(xi + 1e-8)
        for full in (False, True):
            with np.errstate(divide="ignore", invalid="ignore"):
                stirling = np.where(
                    y64 > 1, y64 * np.log(y64) - y64 + 0.5 * np.log(2 * np.pi * y64), 0
                )
            p = per + (stirling if full else 0)
            term = np.exp(xi) if log_input else np.abs(np.log(xi + 1e-8))
            scale = 16 * U * (np.abs(per) + term + y64 * (term + np.abs(xi)) + np.abs(stirling) + 1)
            for reduction in ("none", "sum", "mean"):
                got = logdomain.poisson_nll_loss(
                    xin, y, log_input=log_input, full=full, reduction=reduction
                )
                ref = {"none": p, "sum": p.sum(), "mean": p.mean()}[reduction]
                bound = {"none": scale, "sum": scale.sum(), "mean": scale.mean()}[reduction]
                assert_close(got, ref, bound + TINY)


def lce_reference(
    h, w, t, b=None, cw=None, ignore_index=-100, reduction="mean", eps=0.0, z_loss=0.0, softcap=None
):
    """The fused linear cross-entropy's loss and gradients by the materialised formula in
    float64: logits h @ w.T + b (soft-capped), PyTorch's cross-entropy plus z * w_y * lse**2."""
    h, w = np.asarray(h, np.float64), np.asarray(w, np.float64)
    z = h @ w.T + (0 if b is None else np.asarray(b, np.float64))
    d_cap = 1.0
    if softcap is not None:
        z = softcap * np.tanh(z / softcap)
        d_cap = 1 - (z / softcap) ** 2
    n, v = z.shape
    cwt = np.ones(v) if cw is None else np.asarray(cw, np.float64)
    lse = sp.logsumexp(z, axis=1)
    keep = t != ignore_index
    tt = np.where(keep, t, 0)
    wy = np.where(keep, cwt[tt], 0.0)
    nll = lse - z[np.arange(n), tt]
    smooth = (cwt * (lse[:, None] - z)).sum(axis=1)
    per = np.where(keep, (1 - eps) * wy * nll + eps / v * smooth + z_loss * wy * lse**2, 0.0)
    den = wy.sum()
    loss = per if reduction == "none" else per.sum() / (den if reduction == "mean" else 1.0)
    s = 1.0 / den if reduction == "mean" else 1.0
    p = np.exp(z - lse[:, None])
    a = (1 - eps) * wy + eps / v * cwt.sum() + 2 * z_loss * wy * lse
    dz = a[:, None] * p - eps / v * cwt[None, :]
    dz[np.arange(n), tt] -= (1 - eps) * wy
    dz = np.where(keep[:, None], dz * d_cap * s, 0.0)
    return loss, dz @ w, dz.T @ h, dz.sum(axis=0), dz


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_cross_entropy(device, rng, reduction):
    n, d, v = 37, 24, 101
    h = rng.standard_normal((n, d)).astype(np.float32)
    w = (rng.standard_normal((v, d)) * 0.3).astype(np.float32)
    b = rng.standard_normal(v).astype(np.float32)
    cw = rng.uniform(0.2, 2.0, v).astype(np.float32)
    t = rng.integers(0, v, n)
    t[[2, 9]] = -1
    kw = dict(
        class_weight=cw,
        ignore_index=-1,
        reduction=reduction,
        label_smoothing=0.1,
        z_loss=1e-3,
        softcap=8.0,
    )
    loss = logdomain.linear_cross_entropy(h, w, t, b, device=device, **kw)
    got = logdomain.linear_cross_entropy_with_grad(h, w, t, b, device=device, **kw)
    ref = lce_reference(h, w, t, b, cw, -1, reduction, 0.1, 1e-3, 8.0)
    # Bounds: each logit's f32 dot product (D + 2) U sum|h w|, through the loss's terms and the
    # gradient sums (a generous constant, the formulas are in docs/api.md).
    mag = np.abs(h).astype(np.float64) @ np.abs(w).astype(np.float64).T + np.abs(b)
    ez = (d + 2) * U * mag.max() + 4 * U * 8.0
    scale = np.abs(ref[0]).max() + 1
    assert_close(loss, ref[0], 64 * (ez + v * U) * scale, "loss")
    assert_close(got[0], ref[0], 64 * (ez + v * U) * scale, "loss with grad")
    g_bound = 64 * (ez + v * U) * (np.abs(ref[4]) @ np.abs(w).astype(np.float64) + 1e-6)
    assert_close(got[1], ref[1], g_bound, "d_input")
    gw_bound = 64 * (ez + n * U) * (np.abs(ref[4]).T @ np.abs(h).astype(np.float64) + 1e-6)
    assert_close(got[2], ref[2], gw_bound, "d_weight")
    assert_close(got[3], ref[3], 64 * (ez + n * U) * (np.abs(ref[4]).sum(axis=0) + 1e-6), "d_bias")
    assert loss.dtype == np.float32 and got[1].shape == (n, d) and got[2].shape == (v, d)
    if reduction == "none":
        assert loss.shape == (n,) and loss[2] == 0


def test_linear_cross_entropy_float16_and_errors(device, rng):
    h = rng.standard_normal((5, 8)).astype(np.float16)
    w = rng.standard_normal((6, 8)).astype(np.float16)
    t = np.array([0, 1, 2, 3, 5])
    half = logdomain.linear_cross_entropy(h, w, t, device=device)
    full = logdomain.linear_cross_entropy(
        h.astype(np.float32), w.astype(np.float32), t, device=device
    )
    assert half == full  # f16 operands are read exactly: the f32 op's bits on the same values
    with pytest.raises(ValueError, match="same D"):
        logdomain.linear_cross_entropy(h, w[:, :4], t, device=device)
    with pytest.raises(ValueError, match="target size"):
        logdomain.linear_cross_entropy(h, w, t[:3], device=device)
    with pytest.raises(ValueError, match="outside"):
        logdomain.linear_cross_entropy(h, w, np.array([0, 1, 2, 3, 6]), device=device)
    with pytest.raises(ValueError, match="bias"):
        logdomain.linear_cross_entropy(h, w, t, np.zeros(5), device=device)
    with pytest.raises(ValueError, match="softcap"):
        logdomain.linear_cross_entropy(h, w, t, softcap=0.0, device=device)
    with pytest.raises(TypeError, match="integers"):
        logdomain.linear_cross_entropy(h, w, t.astype(np.float32), device=device)
