"""logsumexp, softmax and log_softmax against SciPy's, evaluated in float64 on the same float32
values, within bounds written as formulas of float32's unit roundoff U."""

import numpy as np
import pytest
import scipy.special as sp

import logdomain

from conftest import TINY, U, assert_close

AXES = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2), ()]


def lse_bound(x64, axis, keepdims=False):
    """6U(|max| + |lse - max|) + 2^-126 per result (the max-shifted log1p form)."""
    m = np.max(x64, axis=axis, keepdims=keepdims) if x64.size else 0.0
    ref = sp.logsumexp(x64, axis=axis, keepdims=keepdims)
    with np.errstate(invalid="ignore"):
        return 6 * U * (np.abs(m) + np.abs(ref - m)) + TINY


def log_softmax_bound(x64, axis):
    m = np.max(x64, axis=axis, keepdims=True)
    lse = sp.logsumexp(x64, axis=axis, keepdims=True)
    return 6 * U * (np.abs(x64) + np.abs(m) + np.abs(lse - m)) + TINY


def softmax_bound(x64, axis):
    """p·U(|x - max| + 4 + 2 log2 n) + 2^-126: the rounding of x - max, of exp and of the
    tree sum of n terms."""
    m = np.max(x64, axis=axis, keepdims=True)
    axes = range(x64.ndim) if axis is None else np.atleast_1d(axis)
    n = int(np.prod([x64.shape[a] for a in axes]))
    ref = sp.softmax(x64, axis=axis)
    return ref * U * (np.abs(x64 - m) + 4 + 2 * np.log2(max(n, 2))) + TINY


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_axes(device, rng, axis, keepdims):
    x = (rng.standard_normal((5, 7, 33)) * 10).astype(np.float32)
    x64 = x.astype(np.float64)
    got = logdomain.logsumexp(x, axis=axis, keepdims=keepdims, device=device)
    ref = sp.logsumexp(x64, axis=axis, keepdims=keepdims)
    assert np.asarray(got).dtype == np.float32
    assert_close(got, ref, lse_bound(x64, axis, keepdims), f"axis={axis}")


@pytest.mark.parametrize("axis", [a for a in AXES if a != ()])
def test_softmax_and_log_softmax_axes(device, rng, axis):
    x = (rng.standard_normal((4, 6, 65)) * 5).astype(np.float32)
    x64 = x.astype(np.float64)
    s = logdomain.softmax(x, axis=axis, device=device)
    ls = logdomain.log_softmax(x, axis=axis, device=device)
    assert s.shape == x.shape and s.dtype == np.float32
    assert_close(s, sp.softmax(x64, axis=axis), softmax_bound(x64, axis), "softmax")
    assert_close(ls, sp.log_softmax(x64, axis=axis), log_softmax_bound(x64, axis), "log_softmax")


def test_default_axis_is_all(device, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    x64 = x.astype(np.float64)
    got = logdomain.logsumexp(x, device=device)
    assert np.ndim(got) == 0 and isinstance(got, np.float32)
    assert_close(got, sp.logsumexp(x64), lse_bound(x64, None))
    assert_close(logdomain.softmax(x), sp.softmax(x64), softmax_bound(x64, None))
    assert abs(float(logdomain.softmax(x).sum()) - 1) < 1e-5


def test_strided_views_are_read_in_place(device, rng):
    base = rng.standard_normal((8, 12, 40)).astype(np.float32)
    views = [
        base[:, ::3, 1:],  # sliced
        base.transpose(2, 0, 1),  # permuted
        base[..., 5],  # a column
        np.broadcast_to(base[0, 0], (6, 40)),  # stride 0
        base[::-1],  # negative stride: copied
        np.asfortranarray(base),
    ]
    for v in views:
        v64 = v.astype(np.float64)
        for axis in (None, 0, -1):
            got = logdomain.logsumexp(v, axis=axis, device=device)
            assert_close(got, sp.logsumexp(v64, axis=axis), lse_bound(v64, axis), f"{v.strides}")
            got = logdomain.log_softmax(v, axis=axis, device=device)
            assert_close(got, sp.log_softmax(v64, axis=axis), log_softmax_bound(v64, axis))


def test_float16_in_float16_out(device, rng):
    x = rng.standard_normal((6, 50)).astype(np.float16)
    x64 = x.astype(np.float64)
    got = logdomain.logsumexp(x, axis=1, device=device)
    assert got.dtype == np.float16
    # float32 results rounded once to float16: half an f16 ulp (2^-11 relative) more.
    bound = lse_bound(x64, 1) + 2.0**-11 * np.abs(sp.logsumexp(x64, axis=1))
    assert_close(got, sp.logsumexp(x64, axis=1), bound)
    s = logdomain.softmax(x[:, ::2], axis=0, device=device)
    assert s.dtype == np.float16
    ref = sp.softmax(x64[:, ::2], axis=0)
    assert_close(s, ref, softmax_bound(x64[:, ::2], 0) + 2.0**-11 * ref + 2.0**-24)


def test_float64_and_integers_compute_in_float32(device, rng):
    x = rng.standard_normal((3, 9)) * 3
    got = logdomain.logsumexp(x, axis=1, device=device)
    assert got.dtype == np.float32
    x32 = x.astype(np.float32).astype(np.float64)
    assert_close(got, sp.logsumexp(x32, axis=1), lse_bound(x32, 1))
    ints = np.arange(12).reshape(3, 4)
    assert_close(
        logdomain.softmax(ints, axis=1), sp.softmax(ints, axis=1), softmax_bound(ints * 1.0, 1)
    )
    assert_close(logdomain.logsumexp([[1, 2], [3, 4]]), sp.logsumexp([[1, 2], [3, 4]]), 1e-6)
    with pytest.raises(TypeError, match="complex"):
        logdomain.logsumexp(np.ones(3, np.complex64))
    with pytest.raises(TypeError):
        logdomain.softmax(np.array(["a", "b"]))


def test_scalars_as_scipy_returns_them(device):
    assert logdomain.logsumexp(5.0) == sp.logsumexp(5.0)
    assert logdomain.softmax(5.0) == 1.0 and np.ndim(logdomain.softmax(5.0)) == 0
    kept = logdomain.logsumexp(np.zeros((2, 3)), keepdims=True)
    assert kept.shape == (1, 1)
    assert logdomain.logsumexp(np.zeros((2, 3)), axis=()).shape == (2, 3)


SPECIALS = [
    [np.inf, -np.inf],
    [np.inf, np.inf],
    [-np.inf, -np.inf],
    [np.nan, 1.0],
    [np.inf, 1.0],
    [-np.inf, 1.0],
    [-np.inf, np.nan],
    [1e38, 1e38],
    [-1e38, 3.0],
]


@pytest.mark.parametrize("row", SPECIALS, ids=str)
def test_special_values_as_scipy(device, row):
    x = np.array([row, row[::-1]], np.float32)
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        ref = sp.logsumexp(x64, axis=1)
        ref_ls = sp.log_softmax(x64, axis=1)
        ref_s = sp.softmax(x64, axis=1)
    assert_close(logdomain.logsumexp(x, axis=1), ref, lse_bound(x64, 1))
    assert_close(
        logdomain.log_softmax(x, axis=1), ref_ls, 1e-30 + 8 * U * np.abs(np.nan_to_num(ref_ls))
    )
    assert_close(logdomain.softmax(x, axis=1), ref_s, 8 * U)


def test_empty_arrays(device):
    assert_close(
        logdomain.logsumexp(np.zeros((0, 3)), axis=0), sp.logsumexp(np.zeros((0, 3)), axis=0), 0
    )
    assert logdomain.logsumexp(np.zeros((0, 3)), axis=1).shape == (0,)
    assert logdomain.softmax(np.zeros((0, 3)), axis=1).shape == (0, 3)
    assert logdomain.logsumexp(np.zeros(0)) == -np.inf


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
def test_b_broadcast_and_signs(device, rng, axis):
    x = (rng.standard_normal((4, 5, 17)) * 4).astype(np.float32)
    b = rng.standard_normal((5, 1)).astype(np.float32)  # broadcasts over axes 0 and 2
    x64, b64 = x.astype(np.float64), b.astype(np.float64)
    log, sign = logdomain.logsumexp(x, axis=axis, b=b, return_sign=True, device=device)
    rlog, rsign = sp.logsumexp(x64, axis=axis, b=b64, return_sign=True)
    np.testing.assert_array_equal(sign, rsign)
    # |Σ b eˣ| may cancel: the bound grows with Σ|b|eˣ / |Σ b eˣ|.
    xb = np.broadcast_to(x64, np.broadcast_shapes(x.shape, b.shape))
    bb = np.broadcast_to(b64, xb.shape)
    m = np.max(xb, axis=axis)
    cond = sp.logsumexp(xb, axis=axis, b=np.abs(bb)) - rlog
    bound = 8 * U * (np.abs(m) + np.abs(rlog - m) + np.exp(cond) * 4) + TINY
    assert_close(log, rlog, bound)
    plain = logdomain.logsumexp(x, axis=axis, b=b, device=device)
    assert_close(plain, np.where(rsign < 0, np.nan, rlog), bound)


def test_b_grows_the_shape_and_zero_b_ignores_specials(device):
    got = logdomain.logsumexp(np.array([1.0, 2.0]), b=np.zeros((3, 2)), axis=-1, return_sign=True)
    ref = sp.logsumexp(np.array([1.0, 2.0]), b=np.zeros((3, 2)), axis=-1, return_sign=True)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)
    x = np.array([np.inf, np.nan, 1.0], np.float32)
    got = logdomain.logsumexp(x, b=[0, 0, 1], return_sign=True)
    assert got == sp.logsumexp(x.astype(np.float64), b=[0, 0, 1.0], return_sign=True)
    got = logdomain.logsumexp(np.array([1.0, 2.0]), b=np.array([1, -1.0]), return_sign=True)
    ref = sp.logsumexp(np.array([1.0, 2.0]), b=np.array([1, -1.0]), return_sign=True)
    assert abs(got[0] - ref[0]) < 1e-6 and got[1] == ref[1]
    assert np.isnan(logdomain.logsumexp(np.array([1.0, 2.0]), b=np.array([1, -1.0])))


def test_return_sign_without_b(device):
    x = np.array([[0.0, 1.0], [-np.inf, -np.inf], [np.nan, 0.0]], np.float32)
    with np.errstate(all="ignore"):
        rlog, rsign = sp.logsumexp(x.astype(np.float64), axis=1, return_sign=True)
    log, sign = logdomain.logsumexp(x, axis=1, return_sign=True)
    np.testing.assert_array_equal(sign, rsign)
    assert_close(log, rlog, 1e-6)


def _masked_ref(x64, w, axis):
    """JAX's where=: excluded entries as -inf (a fully excluded result is -inf)."""
    xm = np.where(w, x64, -np.inf)
    with np.errstate(all="ignore"):
        lse = sp.logsumexp(xm, axis=axis, keepdims=True)
        s = np.where(w, np.exp(xm - lse), 0.0)
        s = np.where(np.isneginf(lse), 0.0, s)
        ls = np.where(w, xm - lse, -np.inf)
    return np.squeeze(lse, axis=axis) if axis is not None else lse.reshape(()), s, ls


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
def test_where(device, rng, axis):
    x = (rng.standard_normal((4, 6, 19)) * 3).astype(np.float32)
    x[0, 0, 0] = np.nan  # excluded below: absent whatever it holds
    w = rng.random((6, 19)) < 0.6
    w[0, 0] = False
    w[1] = False  # a fully excluded row along the last axis
    x64 = x.astype(np.float64)
    wb = np.broadcast_to(w, x.shape)
    lse, s, ls = _masked_ref(x64, wb, axis)
    np.seterr(over="ignore")  # the bounds of -inf results (not compared) overflow
    got = logdomain.logsumexp(x, axis=axis, where=w, device=device)
    m = np.max(np.where(wb, x64, -1e300), axis=axis)
    assert_close(got, lse, 6 * U * (np.abs(m) + np.abs(np.nan_to_num(lse - m))) + TINY)
    assert_close(
        logdomain.softmax(x, axis=axis, where=w, device=device), s, 1e-6 * (s + 1e-30) * 50
    )
    got_ls = logdomain.log_softmax(x, axis=axis, where=w, device=device)
    assert_close(got_ls, ls, 8 * U * (np.abs(np.nan_to_num(ls, neginf=0)) + 40))
    log, sign = logdomain.logsumexp(x, axis=axis, where=w, return_sign=True, device=device)
    assert_close(log, lse, 6 * U * (np.abs(m) + np.abs(np.nan_to_num(lse - m))) + TINY)
    np.testing.assert_array_equal(sign, np.where(np.isneginf(lse), 0.0, 1.0))


def test_axis_errors_as_scipy(device):
    x = np.ones((2, 3), np.float32)
    for f in (logdomain.logsumexp, logdomain.softmax, logdomain.log_softmax):
        with pytest.raises(np.exceptions.AxisError, match="out of bounds"):
            f(x, axis=2)
        with pytest.raises(np.exceptions.AxisError):
            f(x, axis=-3)
        with pytest.raises(ValueError, match="duplicate"):
            f(x, axis=(0, -2))
        with pytest.raises(TypeError):
            f(x, axis=1.5)


def test_bad_b_and_where(device):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError):
        logdomain.logsumexp(x, b=np.ones(4))
    with pytest.raises(ValueError):
        logdomain.logsumexp(x, where=np.ones((2, 2), bool))
    with pytest.raises(TypeError, match="bool"):
        logdomain.softmax(x, where=np.ones(3))
    with pytest.raises(TypeError, match="Device"):
        logdomain.logsumexp(x, device="vulkan")


def test_too_many_dimensions_is_a_value_error(device):
    with pytest.raises(ValueError, match="dimensions"):
        logdomain.logsumexp(np.zeros((1,) * 9, np.float32))
