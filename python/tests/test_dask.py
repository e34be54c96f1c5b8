"""logdomain.dask on Dask arrays (the local threaded scheduler): reductions whose axes span
many chunks, the chunked softmax, the losses, and GaussianMixture on Dask data, against SciPy
in float64 and the in-memory calls."""

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.special as sp
from sklearn.exceptions import ConvergenceWarning

import logdomain
import logdomain.dask as ldd
from logdomain import mixture

from conftest import TINY, U, assert_close
from test_states import lse_bound


@pytest.fixture(autouse=True)
def _threads(device):
    """The threaded scheduler: every chunk on this process's default device."""
    with dask.config.set(scheduler="threads"):
        yield


def chunked(x, chunks):
    return da.from_array(x, chunks=chunks)


@pytest.mark.parametrize(
    "axis, keepdims", [(None, False), (0, False), (1, True), (-1, False), ((0, 2), True)]
)
def test_logsumexp_over_axes_that_span_chunks(rng, axis, keepdims):
    x = (rng.standard_normal((60, 8, 21)) * 10).astype(np.float32)
    dx = chunked(x, (7, 3, 5))  # 9 x 3 x 5 chunks
    got = ldd.logsumexp(dx, axis=axis, keepdims=keepdims)
    assert isinstance(got, da.Array) and got.dtype == np.float32
    x64 = x.astype(np.float64)
    ref = sp.logsumexp(x64, axis=axis, keepdims=keepdims)
    pieces = np.prod([dx.numblocks[a] for a in ldd._axes(axis, 3)])
    bound = np.reshape(lse_bound(x64, axis, pieces), np.shape(ref))
    assert_close(got.compute(), ref, bound, f"axis={axis}")
    assert got.shape == np.shape(ref)


def test_logsumexp_with_b(rng):
    x = rng.standard_normal((40, 6)).astype(np.float32)
    b = rng.uniform(0.5, 2.0, (40, 6))
    b[:, 3] *= np.where(np.arange(40) % 2, 1.0, -1.0)  # mixed signs in one column
    b[:, 4] = -1.0  # a negative sum: NaN without return_sign
    b[5, 5] = 0.0
    x[5, 5] = np.nan  # ignored, as b is 0 there
    got = ldd.logsumexp(chunked(x, (8, 3)), axis=0, b=chunked(b, (8, 3))).compute()
    with np.errstate(invalid="ignore"):
        ref = sp.logsumexp(x.astype(np.float64), axis=0, b=b)
    assert np.isnan(got[4]) and np.isnan(ref[4])
    # x + ln|b| is read in float32 (u |x + ln|b|| each) and the sums P (b > 0) and N (b < 0)
    # have the log-sum-exp's relative error; log(P - N) magnifies it by (P + N) / |P - N|.
    x64 = np.where(b == 0, 0.0, x.astype(np.float64))
    scale = np.abs(x64 + np.log(np.abs(b) + (b == 0))).max(axis=0) + 1
    pos = np.where(b > 0, np.abs(b), 0) * np.exp(x64)
    neg = np.where(b < 0, np.abs(b), 0) * np.exp(x64)
    total, net = pos.sum(axis=0) + neg.sum(axis=0), np.abs(pos.sum(axis=0) - neg.sum(axis=0))
    bound = 32 * U * scale * total / net
    assert_close(got, ref, bound, "b")


@pytest.mark.parametrize("func", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, None, (0, 1)])
def test_softmax_along_chunked_axes(rng, func, axis):
    x = (rng.standard_normal((50, 12)) * 8).astype(np.float32)
    x[3, :] = -np.inf
    x[7, 2] = np.inf
    got = getattr(ldd, func)(chunked(x, (9, 5)), axis=axis)
    assert got.chunks == ((9, 9, 9, 9, 9, 5), (5, 5, 2))
    with np.errstate(invalid="ignore"):
        ref = getattr(sp, func)(x.astype(np.float64), axis=axis)
    in_memory = getattr(logdomain, func)(x, axis=axis)
    # The chunked pass finishes each entry from the merged state exactly as the kernel does
    # from its own: within the in-memory result's bound of SciPy, twice for the merges.
    m = np.max(np.where(np.isfinite(x), x, -np.inf), axis=axis, keepdims=True)
    if func == "softmax":
        bound = np.nan_to_num(ref) * U * (np.abs(np.nan_to_num(x - m)) + 40) + TINY
    else:
        bound = 8 * U * (np.abs(np.nan_to_num(x, neginf=0, posinf=0)) + np.abs(m) + 40) + TINY
    assert_close(got.compute(), ref, bound, func)
    assert_close(in_memory, ref, bound, func + " in memory")


def test_losses_as_reductions(rng):
    n, c = 300, 7
    x = rng.standard_normal((n, c, 3)).astype(np.float32)
    t = rng.integers(0, c, (n, 3))
    t[::11] = -100
    w = rng.uniform(0.5, 2, c).astype(np.float32)
    dx, dt = chunked(x, (40, c, 3)), chunked(t, (40, 3))
    for reduction in ("none", "sum", "mean"):
        for kw in ({}, {"weight": w}, {"weight": w, "label_smoothing": 0.2}):
            got = ldd.cross_entropy(dx, dt, reduction=reduction, **kw).compute()
            ref = logdomain.cross_entropy(x, t, reduction=reduction, **kw)
            per = logdomain.cross_entropy(x, t, reduction="none", **kw)
            # Both sums' rounding: the GPU's pairwise f32 tree, the chunks' f64 sum rounded once.
            bound = 2 * U * (2 + np.log2(per.size)) * np.abs(per.astype(np.float64)).sum()
            if reduction == "mean":
                keep = t != -100
                bound /= (w[t[keep]] if "weight" in kw else np.ones(keep.sum())).sum()
            assert_close(got, ref, bound if reduction != "none" else 0, f"{reduction} {kw}")
    probs = sp.softmax(rng.standard_normal((n, c, 3)), axis=1).astype(np.float32)
    got = ldd.cross_entropy(dx, chunked(probs, (40, c, 3))).compute()
    assert_close(got, logdomain.cross_entropy(x, probs), 1e-5, "probabilities")
    logp = logdomain.log_softmax(x, axis=1)
    got = ldd.nll_loss(chunked(logp, (40, c, 3)), dt, weight=w).compute()
    assert_close(got, logdomain.nll_loss(logp, t, weight=w), 1e-5, "nll_loss")
    y = (rng.random((n, c)) > 0.5).astype(np.float32)
    z = x[:, :, 0]
    pw = rng.uniform(0.5, 2, c).astype(np.float32)
    got = ldd.binary_cross_entropy_with_logits(
        chunked(z, (50, 3)), chunked(y, (50, 3)), pos_weight=pw
    ).compute()
    ref = logdomain.binary_cross_entropy_with_logits(z, y, pos_weight=pw)
    assert_close(got, ref, 1e-5, "bce")
    var = rng.uniform(0.5, 2, (n,)).astype(np.float32)
    got = ldd.gaussian_nll_loss(chunked(z, (50, 7)), chunked(y, (50, 7)), var[:, None]).compute()
    ref = logdomain.gaussian_nll_loss(z, y, var[:, None])
    assert_close(got, ref, 1e-5, "gaussian")
    counts = rng.poisson(2.0, (n, c)).astype(np.float32)
    got = ldd.poisson_nll_loss(chunked(z, (50, 7)), chunked(counts, (50, 7)), full=True)
    assert_close(got.compute(), logdomain.poisson_nll_loss(z, counts, full=True), 1e-4, "poisson")
    with pytest.raises(ValueError, match="unbatched"):
        ldd.cross_entropy(chunked(x[0, :, 0], 7), 1)


def blobs(rng, n=4000, d=3, k=3):
    centres = rng.normal(0, 4, (k, d))
    return centres[rng.integers(0, k, n)] + rng.normal(0, 1, (n, d))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_mixture_on_dask_equals_the_in_memory_fit(rng, covariance_type):
    """The same data and starting parameters: every iteration's lower bound within 1e-6
    relative; score_samples, predict, predict_proba as Dask arrays."""
    X = blobs(rng)
    start = logdomain.GaussianMixture(
        3, covariance_type=covariance_type, max_iter=0, init_params="random", random_state=0
    ).fit(X)
    kw = dict(
        n_components=3,
        covariance_type=covariance_type,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=0.0,
        max_iter=15,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 15 iterations at tol 0
        mem = logdomain.GaussianMixture(**kw).fit(X)
        dist = logdomain.GaussianMixture(**kw).fit(chunked(X, (200, 3)))
    assert len(dist.lower_bounds_) == len(mem.lower_bounds_)
    np.testing.assert_allclose(dist.lower_bounds_, mem.lower_bounds_, rtol=1e-6)
    dX = chunked(X, (250, 3))
    for method in ("score_samples", "predict_proba", "predict"):
        lazy = getattr(dist, method)(dX)
        assert isinstance(lazy, da.Array), method
        np.testing.assert_allclose(lazy.compute(), getattr(dist, method)(X), rtol=1e-6, atol=1e-6)
    assert abs(dist.score(dX) - dist.score(X)) < 1e-6 * abs(dist.score(X))


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_mixture_initialisation_on_a_sample(rng, monkeypatch, init_params):
    """More points than the sample: the initialisation reads only the sample's points; the
    fit finds the blobs as the in-memory fit does."""
    X = blobs(rng, n=6000)
    monkeypatch.setattr(mixture._Chunked, "SAMPLE", 500)
    seen = []
    real = mixture.GaussianMixture._initial_parameters

    def spy(self, points, *args):
        seen.append(points.shape[0])
        return real(self, points, *args)

    monkeypatch.setattr(mixture.GaussianMixture, "_initial_parameters", spy)
    est = logdomain.GaussianMixture(3, init_params=init_params, random_state=0, n_init=2)
    est.fit(chunked(X, (300, 3)))
    ref = logdomain.GaussianMixture(3, init_params=init_params, random_state=0, n_init=2).fit(X)
    assert seen[:2] == [500, 500] and seen[2:] == [6000, 6000]
    assert est.converged_
    assert abs(est.lower_bound_ - ref.lower_bound_) < 1e-3 * abs(ref.lower_bound_)


def test_mixture_on_dask_rejects_bad_data(rng):
    X = blobs(rng, n=100)
    X[50, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        logdomain.GaussianMixture(2, random_state=0).fit(chunked(X, (25, 3)))
    with pytest.raises(ValueError, match="2-D"):
        logdomain.GaussianMixture(2).fit(chunked(X[:, 0], 25))
    est = logdomain.GaussianMixture(2, random_state=0).fit(np.nan_to_num(X))
    with pytest.raises(ValueError, match="features"):
        est.predict(chunked(X[:, :2], (25, 2)))
