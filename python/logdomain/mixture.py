"""scikit-learn's ``GaussianMixture`` with its E-steps on the GPU.

The class has scikit-learn's constructor, defaults, methods, fitted attributes, errors and
warnings; it is a scikit-learn estimator (``clone``, pipelines, ``GridSearchCV``) and passes
``sklearn.utils.estimator_checks.check_estimator``. It needs scikit-learn
(``pip install './python[sklearn]'``); the rest of logdomain does not.

Where the work is done
----------------------
* Each EM iteration is one GPU reduction over the points (``_native.gmm_stats``): the
  log-joint ``ln w_k + ln N(x | mu_k, Sigma_k)`` of every point and component, its row
  log-sum-exp ``log p(x)``, the responsibilities ``r = exp(L - log p(x))`` and, summed over the
  points in a deterministic tree, ``sum log p(x)``, ``N_k = sum r``, ``sum r (x - mu_k)``,
  ``sum r (x - mu_k)^2`` and, for ``full``, the off-diagonal scatter. Only these ``O(k d^2)``
  sums come back; the M-step turns them into the new parameters on the host in float64.
  ``tied`` components share one factor ``P``: the kernels see the points ``x P`` and a
  unit-variance diagonal mixture (see ``_Mixture``), and the covariance comes from the points'
  scatter about their mean, computed once per fit (``_Gram``).
* ``score_samples``, ``predict`` and ``predict_proba`` are one GPU call each.
* The initial responsibilities (scikit-learn's ``KMeans``, ``kmeans_plusplus`` or the random
  draws, from the same ``random_state`` in the same order) and the parameters estimated from
  them are computed on the host in float64, once per initialisation, as scikit-learn does.

Precision
---------
The points and the parameters are read in float32 on the GPU, so ``score_samples``,
``predict_proba`` and the lower bound carry float32's relative error (about ``1e-7`` times
the magnitude of the terms, times ``log2`` of the number of points for the sums), whatever
the input dtype; their arrays are float32. A ``tol`` far below that error (below about
``1e-6 * |lower_bound_|``) may not be reached and the fit then runs to ``max_iter``. The fitted
parameters have the input's dtype (float32 or float64), as scikit-learn's.
"""

from __future__ import annotations

import math
import time
import warnings
from numbers import Integral, Real
from typing import Any, Optional, Tuple

import numpy as np

try:
    from sklearn.base import BaseEstimator, DensityMixin
    from sklearn.cluster import KMeans, kmeans_plusplus
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils import check_array, check_random_state
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.validation import check_is_fitted
except ImportError as e:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "logdomain.GaussianMixture is a scikit-learn estimator and needs scikit-learn; "
        "install it with `pip install scikit-learn` (or `pip install './python[sklearn]'` "
        "from a checkout of logdomain)"
    ) from e

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn 1.3 to 1.5

    def _validate_data(estimator: Any, X: Any, **kwargs: Any) -> np.ndarray:
        return estimator._validate_data(X, **kwargs)


from . import _native
from ._device import default_device
from ._special import contiguous

__all__ = ["GaussianMixture"]

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
    "number of components, increase reg_covar, or scale the input data."
)


# --- the parameters: shapes, checks and Cholesky factors (host, float64) --------------------


def _check_shape(param: np.ndarray, shape: Tuple[int, ...], name: str) -> None:
    if param.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {param.shape}"
        )


def _checked_weights(weights: Any, n_components: int) -> np.ndarray:
    w = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(w, (n_components,), "weights")
    if np.any(w < 0.0) or np.any(w > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got max value "
            f"{np.max(w):.5f}, min value {np.min(w):.5f}"
        )
    atol = 1e-6 if w.dtype == np.float32 else 1e-8
    if abs(1.0 - float(np.sum(w))) > atol:
        raise ValueError(
            f"The parameter 'weights' should be normalized, but got sum(weights) = {np.sum(w):.5f}"
        )
    return w


def _checked_means(means: Any, n_components: int, n_features: int) -> np.ndarray:
    m = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(m, (n_components, n_features), "means")
    return m


def _checked_precisions(
    precisions: Any, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    p = check_array(
        precisions,
        dtype=[np.float64, np.float32],
        ensure_2d=False,
        allow_nd=covariance_type == "full",
    )
    shapes = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }
    _check_shape(p, shapes[covariance_type], f"{covariance_type} precision")
    if covariance_type in ("diag", "spherical"):
        if np.any(p <= 0.0):
            raise ValueError(f"'{covariance_type} precision' should be positive")
    else:
        for m in p if covariance_type == "full" else [p]:
            if not (np.allclose(m, m.T) and np.all(np.linalg.eigvalsh(m) > 0.0)):
                raise ValueError(
                    f"'{covariance_type} precision' should be symmetric, positive-definite"
                )
    return p


def _precision_cholesky(covariances: np.ndarray, covariance_type: str, dtype: Any) -> np.ndarray:
    """The upper-triangular ``U`` with ``U U^T = Sigma^{-1}`` (scikit-learn's
    ``precisions_cholesky_``): ``(L^{-1})^T`` for ``Sigma = L L^T``; for ``diag`` and
    ``spherical`` ``1 / sqrt(variance)``."""
    message = _ILL_DEFINED
    if dtype == np.float32:
        message += (
            " The numerical accuracy can also be improved by passing float64 data instead of "
            "float32."
        )
    if covariance_type in ("diag", "spherical"):
        if np.any(covariances <= 0.0):
            raise ValueError(message)
        return 1.0 / np.sqrt(covariances)
    stack = covariances if covariance_type == "full" else covariances[np.newaxis]
    out = np.empty_like(stack)
    eye = np.eye(stack.shape[-1])
    for k, cov in enumerate(stack):
        try:
            lower = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(message) from None
        out[k] = np.linalg.solve(lower, eye).T
    return out if covariance_type == "full" else out[0]


def _cholesky_of_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """The upper-triangular ``U`` with ``U U^T = P``: the flipped lower factor of the flipped
    ``P`` (``J chol(J P J) J``, ``J`` the exchange matrix)."""
    if covariance_type in ("diag", "spherical"):
        return np.sqrt(precisions)
    stack = precisions if covariance_type == "full" else precisions[np.newaxis]
    out = np.stack([np.linalg.cholesky(p[::-1, ::-1])[::-1, ::-1] for p in stack])
    return out if covariance_type == "full" else out[0]


def _covariances_of_cholesky(chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """``(U U^T)^{-1}`` from the precisions' factor ``U``."""
    if covariance_type in ("diag", "spherical"):
        return 1.0 / (chol * chol)
    stack = chol if covariance_type == "full" else chol[np.newaxis]
    out = np.stack([np.linalg.inv(u @ u.T) for u in stack])
    return out if covariance_type == "full" else out[0]


def _estimate_from_resp(
    X: np.ndarray, resp: np.ndarray, reg_covar: float, covariance_type: str
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights (unnormalised: ``N_k``), means and covariances from responsibilities, on the
    host in float64: the initialisation's M-step."""
    nk = resp.sum(axis=0) + 10 * np.finfo(np.float64).eps
    means = (resp.T @ X) / nk[:, np.newaxis]
    d = X.shape[1]
    if covariance_type == "full":
        cov = np.empty((len(nk), d, d))
        for k in range(len(nk)):
            diff = X - means[k]
            cov[k] = ((resp[:, k] * diff.T) @ diff) / nk[k]
        cov[:, np.arange(d), np.arange(d)] += reg_covar
    elif covariance_type == "tied":
        # scikit-learn's tied estimate (X^T X - sum_k N_k mu_k mu_k^T) / sum_k N_k: the
        # within-component scatter where each point's responsibilities sum to 1, and, as
        # scikit-learn's, not where they do not ('k-means++', 'random_from_data').
        cov = (X.T @ X - (nk * means.T) @ means) / nk.sum()
        cov.flat[:: d + 1] += reg_covar
    else:
        cov = np.empty((len(nk), d))
        for k in range(len(nk)):
            diff = X - means[k]
            cov[k] = (resp[:, k] @ (diff * diff)) / nk[k]
        cov += reg_covar
        if covariance_type == "spherical":
            cov = cov.mean(axis=1)
    return nk, means, cov


class _Gram:
    """``sum_i (x_i - c)(x_i - c)^T`` about the points' mean ``c``, in float64, once per fit:
    what the tied covariance needs besides the means, since where each point's
    responsibilities sum to 1, ``sum_k sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T =
    sum_i (x_i - c)(x_i - c)^T - sum_k N_k (mu_k - c)(mu_k - c)^T`` (centred at ``c`` so that
    the difference does not cancel for data far from the origin)."""

    def __init__(self, centre: np.ndarray, matrix: np.ndarray) -> None:
        self.centre = centre
        self.matrix = matrix

    @classmethod
    def of(cls, X: np.ndarray) -> "_Gram":
        centre = X.mean(axis=0)
        return cls(centre, _block_gram(X, centre))


def _m_step_from_sums(
    sums: Tuple[Any, ...],
    means: np.ndarray,
    reg_covar: float,
    covariance_type: str,
    gram: Optional[_Gram] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and covariances from the GPU's sums about the old means ``mu``:
    ``mu' = mu + delta`` with ``delta = sum r (x - mu) / N_k``, and
    ``sum r (x - mu')(x - mu')^T = sum r (x - mu)(x - mu)^T - N_k delta delta^T``; for
    ``tied``, from the points' ``gram`` and the new means."""
    _, resp_sums, sum_dev, sum_dev2, cross = sums
    nk = resp_sums.astype(np.float64) + 10 * np.finfo(np.float64).eps
    delta = sum_dev.astype(np.float64) / nk[:, np.newaxis]
    new_means = means + delta
    k, d = means.shape
    if covariance_type == "full":
        scatter = np.zeros((k, d, d))
        rows, cols = np.triu_indices(d, 1)
        scatter[:, rows, cols] = cross
        scatter[:, cols, rows] = cross
        scatter[:, np.arange(d), np.arange(d)] = sum_dev2
        scatter -= nk[:, np.newaxis, np.newaxis] * delta[:, :, np.newaxis] * delta[:, np.newaxis, :]
        cov = scatter / nk[:, np.newaxis, np.newaxis]
        cov[:, np.arange(d), np.arange(d)] += reg_covar
    elif covariance_type == "tied":
        assert gram is not None
        shifted = new_means - gram.centre
        cov = (gram.matrix - (nk * shifted.T) @ shifted) / nk.sum()
        cov.flat[:: d + 1] += reg_covar
    else:
        # A variance is never negative; float32 sums that cancel to below zero are zero.
        var = np.maximum(sum_dev2.astype(np.float64) / nk[:, np.newaxis] - delta * delta, 0.0)
        cov = var + reg_covar
        if covariance_type == "spherical":
            cov = cov.mean(axis=1)
    return nk / nk.sum(), new_means, cov


class _Mixture:
    """A mixture's parameters as the GPU kernels read them (float32, C-contiguous)."""

    def __init__(
        self, weights: np.ndarray, means: np.ndarray, chol: np.ndarray, covariance_type: str
    ) -> None:
        f32 = np.float32
        k, d = means.shape
        # The kernels take weights that sum to 1. scikit-learn's initial weights from the
        # 'k-means++' and 'random_from_data' responsibilities sum to k / n (its first M-step
        # normalises them): the responsibilities do not depend on the scale, log p(x) moves by
        # its log, added back on the host.
        total = float(np.sum(weights, dtype=np.float64))
        self.log_scale = math.log(total) if total > 0 else 0.0
        self.weights = contiguous(np.asarray(weights, np.float64) / total, dtype=f32)
        self.means = contiguous(means, dtype=f32)
        # Only full covariances need the off-diagonal scatter (tied ones use the Gram matrix).
        self.scatter = covariance_type == "full"
        # Tied components share one factor P: with y = x P and nu_k = mu_k P, every component
        # is N(y | nu_k, I) up to the shared ln det P, so the kernels evaluate a unit-variance
        # diagonal mixture of the transformed points (d multiply-adds per point and component
        # instead of d (d + 1) / 2) and the host adds ln det P back.
        self.transform = None
        if covariance_type == "full":
            self.kind, cov = "full", chol
        elif covariance_type == "tied":
            P = np.asarray(chol, dtype=np.float64)
            self.transform = P
            self.log_scale += float(np.sum(np.log(np.diag(P))))
            self.means = contiguous(np.asarray(means, np.float64) @ P, dtype=f32)
            self.kind, cov = "diag", np.ones((k, d))
        else:
            # The kernels take variances for diagonal and spherical components.
            self.kind = covariance_type
            cov = 1.0 / (np.asarray(chol, dtype=np.float64) ** 2)
        self.cov = contiguous(cov, dtype=f32)

    def _points(self, X: np.ndarray) -> np.ndarray:
        if self.transform is None:
            return X
        return contiguous(X.astype(np.float64) @ self.transform, dtype=np.float32)

    def stats(self, device: Any, X: np.ndarray) -> Tuple[Any, ...]:
        # A Dask worker unpickles the parameters from a byte buffer, which may leave them
        # misaligned; `contiguous` copies only then.
        params = [contiguous(a) for a in (self.weights, self.means, self.cov)]
        log_likelihood, nk, sum_dev, *rest = _native.gmm_stats(
            device, contiguous(self._points(X)), self.kind, *params, self.scatter
        )
        if self.transform is not None:
            # sum r (y - nu) = (sum r (x - mu)) P; the squares are not used (the Gram is).
            sum_dev = np.linalg.solve(self.transform.T, np.asarray(sum_dev, np.float64).T).T
        return (log_likelihood + X.shape[0] * self.log_scale, nk, sum_dev, *rest)

    def predict(self, device: Any, X: np.ndarray) -> np.ndarray:
        # The argmax of the log-joint (scikit-learn's predict), one label a point read back.
        return _native.gmm_predict(
            device, contiguous(self._points(X)), self.kind, self.weights, self.means, self.cov
        )

    def score(self, device: Any, X: np.ndarray, log_resp: bool) -> np.ndarray:
        out = _native.gmm_score(
            device, self._points(X), self.kind, self.weights, self.means, self.cov, log_resp
        )
        if not log_resp and self.log_scale != 0.0:
            out += np.float32(self.log_scale)
        return out


def _points(X: np.ndarray) -> np.ndarray:
    """``X`` as the kernels read it: C-contiguous float32, every value finite in float32."""
    with np.errstate(over="ignore"):
        X32 = contiguous(X, dtype=np.float32)
    if not np.all(np.isfinite(X32)):
        raise ValueError(
            "X has values beyond float32's range (|x| > 3.4e38); logdomain computes in float32"
        )
    return X32


def _is_dask(X: Any) -> bool:
    """Whether ``X`` is a Dask array (without importing Dask)."""
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "chunks")


def _block_points(block: Any) -> np.ndarray:
    """A chunk of a Dask array as the kernels read it, with scikit-learn's check of its
    values."""
    X = np.asarray(block)
    if X.dtype.kind not in "fiub":
        raise ValueError(f"Unsupported dtype {X.dtype} in X; X must be numeric")
    if not np.all(np.isfinite(X)):
        raise ValueError("Input X contains NaN or infinity.")
    return _points(X)


def _block_stats(block: Any, mixture: _Mixture) -> Tuple[Any, ...]:
    """One chunk's E-step sums, on the worker's default device."""
    X32 = _block_points(block)
    if X32.shape[0] == 0:
        k, d = mixture.means.shape
        pairs = d * (d - 1) // 2 if mixture.scatter else 0
        return (0.0, np.zeros(k), np.zeros((k, d)), np.zeros((k, d)), np.zeros((k, pairs)))
    return mixture.stats(default_device(), X32)


def _block_gram(block: Any, centre: np.ndarray) -> np.ndarray:
    dev = np.asarray(block, dtype=np.float64) - centre
    return dev.T @ dev


def _block_score(block: Any, mixture: _Mixture, what: str) -> np.ndarray:
    X32 = _block_points(block)
    if what == "score_samples":
        return mixture.score(default_device(), X32, False)
    if what == "predict":
        return mixture.predict(default_device(), X32)
    return np.exp(mixture.score(default_device(), X32, True))


class _InMemory:
    """The points of a fit held by this process: one GPU call per E-step."""

    def __init__(self, X: np.ndarray) -> None:
        self.shape = X.shape
        self.dtype = X.dtype
        self.X = X
        self.X32 = _points(X)
        self.device = default_device()

    def init_points(self, n_wanted: int, random_state: Any) -> np.ndarray:
        # float64 for the host's estimates, made when asked (no copy of float64 input).
        return np.asarray(self.X, dtype=np.float64)

    def gram(self) -> _Gram:
        return _Gram.of(np.asarray(self.X, dtype=np.float64))

    def stats(self, mixture: _Mixture) -> Tuple[Any, ...]:
        return mixture.stats(self.device, self.X32)

    def labels(self, mixture: _Mixture) -> np.ndarray:
        return mixture.predict(self.device, self.X32)


class _Chunked:
    """The points of a fit as a Dask array: each E-step's sums computed on the chunks where
    they lie (on each worker's own device) and added on the driver in the chunks' order, in
    float64. The array is persisted for the fit (its chunks computed once)."""

    #: Points drawn to the driver for the initialisation, at least (all of them if fewer).
    SAMPLE = 20_000

    def __init__(self, X: Any) -> None:
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D array, got a {X.ndim}-D Dask array instead")
        if any(np.isnan(c) for cs in X.chunks for c in cs):
            raise ValueError("X has chunks of unknown size; call X.compute_chunk_sizes() first")
        if X.dtype.kind not in "fiub":
            raise ValueError(f"Unsupported dtype {X.dtype} in X; X must be numeric")
        self.shape = X.shape
        self.dtype = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
        self.X = X.rechunk({1: -1}).persist()
        self.blocks = list(self.X.to_delayed().ravel())

    def _compute(self, fn: Any, *args: Any) -> list:
        import dask

        return list(dask.compute(*[dask.delayed(fn)(b, *args) for b in self.blocks]))

    def init_points(self, n_wanted: int, random_state: Any) -> np.ndarray:
        """All the points if there are at most ``max(SAMPLE, n_wanted)``, else that many drawn
        without replacement with ``random_state`` (in their order in X)."""
        n = self.shape[0]
        m = max(self.SAMPLE, n_wanted)
        if n <= m:
            return np.asarray(self.X.compute(), dtype=np.float64)
        idx = np.sort(random_state.choice(n, size=m, replace=False))
        return np.asarray(self.X[idx].compute(), dtype=np.float64)

    def gram(self) -> _Gram:
        centre = np.asarray(self.X.mean(axis=0, dtype=np.float64).compute())
        return _Gram(centre, sum(self._compute(_block_gram, centre)))

    def stats(self, mixture: _Mixture) -> Tuple[Any, ...]:
        parts = self._compute(_block_stats, mixture)
        total = [0.0] + [np.zeros(np.shape(a), np.float64) for a in parts[0][1:]]
        for part in parts:
            total[0] += float(part[0])
            for i in range(1, 5):
                total[i] += np.asarray(part[i], np.float64)
        return tuple(total)

    def labels(self, mixture: _Mixture) -> Any:
        return _chunked_method(self.X, mixture, "predict", None)


def _chunked_method(X: Any, mixture: _Mixture, what: str, n_components: Optional[int]) -> Any:
    """``score_samples``, ``predict`` or ``predict_proba`` of a Dask array, per chunk."""
    X = X.rechunk({1: -1})
    if what == "predict_proba":
        return X.map_blocks(
            _block_score,
            mixture,
            what,
            dtype=np.float32,
            chunks=(X.chunks[0], (n_components,)),
            meta=np.empty((0, 0), np.float32),
        )
    dtype = np.int64 if what == "predict" else np.float32
    return X.map_blocks(
        _block_score, mixture, what, dtype=dtype, drop_axis=1, meta=np.empty((0,), dtype)
    )


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture, fitted by EM with its E-steps on the GPU.

    scikit-learn's :class:`sklearn.mixture.GaussianMixture`: the same parameters, defaults,
    methods, fitted attributes, errors and ``ConvergenceWarning``. Each EM iteration's
    E-step and sufficient statistics are one GPU reduction on the default device
    (:func:`logdomain.default_device`: ``WGPU_BACKEND`` and ``WGPU_ADAPTER_NAME`` choose it);
    the M-step runs on the host in float64 from those sums.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        'full': each component its own general covariance matrix; 'tied': all components
        one general covariance matrix; 'diag': each component its own diagonal covariance;
        'spherical': each component its own single variance.
    tol : float, default=1e-3
        The convergence threshold: EM stops when the lower bound's gain is below it. The
        lower bound is computed in float32 (see Notes).
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of the covariances.
    max_iter : int, default=100
        The number of EM iterations to perform.
    n_init : int, default=1
        The number of initialisations; the best result is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How the weights, means and precisions are initialised, as scikit-learn (the same
        ``KMeans``, ``kmeans_plusplus`` and random draws, so the same starting parameters for
        the same ``random_state``).
    weights_init : array-like of shape (n_components,), default=None
        The user-provided initial weights.
    means_init : array-like of shape (n_components, n_features), default=None
        The user-provided initial means.
    precisions_init : array-like, default=None
        The user-provided initial precisions (inverses of the covariance matrices), of shape
        (n_components,) for 'spherical', (n_features, n_features) for 'tied',
        (n_components, n_features) for 'diag', (n_components, n_features, n_features) for
        'full'.
    random_state : int, RandomState instance or None, default=None
        The random seed of the initialisation and of :meth:`sample`.
    warm_start : bool, default=False
        If True, each ``fit`` starts from the previous solution (and ``n_init`` is ignored).
    verbose : int, default=0
        1 prints the initialisations and iterations, 2 also their times and lower bounds.
    verbose_interval : int, default=10
        The number of iterations between prints.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        Shaped by ``covariance_type`` as ``precisions_init``.
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
        The upper-triangular Cholesky factors of the precisions (``U U^T = P``).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        The mean log-likelihood of the training data at the best fit's last E-step.
    lower_bounds_ : list of float
        The lower bound after each iteration of the best fit.
    n_features_in_ : int

    Notes
    -----
    The points and parameters are read in float32 on the GPU: ``score_samples``,
    ``predict_proba`` and the lower bound have float32's relative error (about 1e-7 of the
    magnitude of their terms) and ``score_samples`` and ``predict_proba`` return float32
    arrays; the fitted parameters have the input's dtype, float32 or float64.

    Examples
    --------
    >>> import numpy as np
    >>> from logdomain import GaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(gm.means_[:, 0]), 3)
    array([ 1., 10.])
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(_COVARIANCE_TYPES))],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "random", "random_from_data", "k-means++"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Estimate the parameters with the EM algorithm.

        Fits ``n_init`` times (once with ``warm_start`` after the first fit) and keeps the
        parameters with the largest lower bound. Each fit iterates E- and M-steps until the
        lower bound's gain is below ``tol`` or ``max_iter`` iterations; otherwise a
        ``ConvergenceWarning`` is raised.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points, one per row.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : GaussianMixture
            The fitted mixture.
        """
        self.fit_predict(X, y)
        return self

    def fit_predict(self, X, y=None):
        """Estimate the parameters with the EM algorithm, then predict the labels of ``X``.

        As :meth:`fit`, then a final E-step, so that ``fit_predict(X)`` equals
        ``fit(X).predict(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points, one per row.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            The component of each point.
        """
        self._validate_params()
        if _is_dask(X):
            source: Any = _Chunked(X)
            if source.shape[0] < 2:
                raise ValueError(
                    f"Found array with {source.shape[0]} sample(s) while a minimum of 2 is "
                    "required by GaussianMixture."
                )
            self.n_features_in_ = source.shape[1]
        else:
            X = _validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
            source = _InMemory(X)
        n_samples, n_features = source.shape
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {n_samples}"
            )
        inits = self._checked_inits(n_features)
        gram = source.gram() if self.covariance_type == "tied" else None

        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        random_state = check_random_state(self.random_state)
        if not do_init:
            current = tuple(
                np.asarray(p, dtype=np.float64)
                for p in (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)
            )

        best = None
        max_lower_bound = -np.inf
        best_lower_bounds: list = []
        best_n_iter = 0
        self.converged_ = False
        for init in range(n_init):
            started = self._verbose_init_begin(init)
            if do_init:
                points = source.init_points(50 * self.n_components, random_state)
                current = self._initial_parameters(points, random_state, inits, n_samples)
            lower_bound = -np.inf if do_init else self.lower_bound_
            lower_bounds: list = []
            if self.max_iter == 0:
                best, best_n_iter = current, 0
                continue
            converged = False
            tick = started
            for n_iter in range(1, self.max_iter + 1):
                previous = lower_bound
                weights, means, _, chol = current
                sums = source.stats(_Mixture(weights, means, chol, self.covariance_type))
                weights, means, cov = _m_step_from_sums(
                    sums, means, self.reg_covar, self.covariance_type, gram
                )
                chol = _precision_cholesky(cov, self.covariance_type, source.dtype)
                current = (weights, means, cov, chol)
                lower_bound = sums[0] / n_samples
                lower_bounds.append(lower_bound)
                change = lower_bound - previous
                tick = self._verbose_iteration(n_iter, change, tick)
                if abs(change) < self.tol:
                    converged = True
                    break
            self._verbose_init_end(lower_bound, converged, started)
            if lower_bound > max_lower_bound or max_lower_bound == -np.inf:
                max_lower_bound = lower_bound
                best, best_n_iter, best_lower_bounds = current, n_iter, lower_bounds
                self.converged_ = converged

        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._set_parameters(best, source.dtype)
        self.n_iter_ = best_n_iter
        self.lower_bound_ = max_lower_bound
        self.lower_bounds_ = best_lower_bounds
        return source.labels(self._gpu_mixture())

    def _checked_inits(self, n_features: int) -> Tuple[Optional[np.ndarray], ...]:
        """The user's initial parameters, checked (the parameters themselves are not
        modified, as a scikit-learn estimator's must not be)."""
        k = self.n_components
        w = None if self.weights_init is None else _checked_weights(self.weights_init, k)
        m = None if self.means_init is None else _checked_means(self.means_init, k, n_features)
        p = (
            None
            if self.precisions_init is None
            else _checked_precisions(self.precisions_init, self.covariance_type, k, n_features)
        )
        return w, m, p

    def _initial_resp(self, X: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
        """scikit-learn's initial responsibilities, drawn from ``random_state`` as it draws
        them."""
        n, k = X.shape[0], self.n_components
        resp = np.zeros((n, k))
        if self.init_params == "kmeans":
            labels = KMeans(n_clusters=k, n_init=1, random_state=random_state).fit(X).labels_
            resp[np.arange(n), labels] = 1
        elif self.init_params == "random":
            resp = random_state.uniform(size=(n, k))
            resp /= resp.sum(axis=1)[:, np.newaxis]
        elif self.init_params == "random_from_data":
            indices = random_state.choice(n, size=k, replace=False)
            resp[indices, np.arange(k)] = 1
        else:  # "k-means++"
            _, indices = kmeans_plusplus(X, k, random_state=random_state)
            resp[indices, np.arange(k)] = 1
        return resp

    def _initial_parameters(
        self,
        X: np.ndarray,
        random_state: np.random.RandomState,
        inits: Tuple[Any, ...],
        n_samples: int,
    ) -> Tuple[np.ndarray, ...]:
        """(weights, means, covariances, precisions' Cholesky factors) to start EM from, from
        the points ``X``: all ``n_samples`` points, or a sample of them (a Dask array's)."""
        w_init, m_init, p_init = inits
        n = X.shape[0]
        weights = means = cov = None
        if w_init is None or m_init is None or p_init is None:
            resp = self._initial_resp(X, random_state)
            weights, means, cov = _estimate_from_resp(X, resp, self.reg_covar, self.covariance_type)
            weights = weights / n
            if self.init_params in ("k-means++", "random_from_data"):
                # One point per component: scikit-learn's weights are 1 / n_samples each.
                weights = weights * (n / n_samples)
        if w_init is not None:
            weights = np.asarray(w_init, dtype=np.float64)
        if m_init is not None:
            means = np.asarray(m_init, dtype=np.float64)
        if p_init is None:
            chol = _precision_cholesky(cov, self.covariance_type, X.dtype)
        else:
            chol = _cholesky_of_precisions(
                np.asarray(p_init, dtype=np.float64), self.covariance_type
            )
            cov = _covariances_of_cholesky(chol, self.covariance_type)
        return weights, means, cov, chol

    def _set_parameters(self, params: Tuple[np.ndarray, ...], dtype: Any) -> None:
        weights, means, cov, chol = (np.asarray(p, dtype=dtype) for p in params)
        self.weights_, self.means_, self.covariances_ = weights, means, cov
        self.precisions_cholesky_ = chol
        if self.covariance_type == "full":
            self.precisions_ = np.matmul(chol, np.swapaxes(chol, 1, 2))
        elif self.covariance_type == "tied":
            self.precisions_ = chol @ chol.T
        else:
            self.precisions_ = chol**2

    def _gpu_mixture(self) -> _Mixture:
        return _Mixture(self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type)

    # --- printing ----------------------------------------------------------------------------

    def _verbose_init_begin(self, init: int) -> float:
        if self.verbose >= 1:
            print(f"Initialization {init}")
        return time.time()

    def _verbose_iteration(self, n_iter: int, change: float, tick: float) -> float:
        if n_iter % self.verbose_interval == 0:
            now = time.time()
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            elif self.verbose >= 2:
                print(
                    f"  Iteration {n_iter}\t time lapse {now - tick:.5f}s\t ll change {change:.5f}"
                )
            return now
        return tick

    def _verbose_init_end(self, lower_bound: float, converged: bool, started: float) -> None:
        if self.verbose == 1:
            print(f"Initialization converged: {converged}")
        elif self.verbose >= 2:
            print(
                f"Initialization converged: {converged}\t time lapse "
                f"{time.time() - started:.5f}s\t lower bound {lower_bound:.5f}"
            )

    # --- evaluation --------------------------------------------------------------------------

    def _fitted_points(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return _points(_validate_data(self, X, reset=False))

    def _fitted_chunks(self, X: Any, what: str) -> Any:
        """``what`` of a Dask array, per chunk on the workers: a Dask array."""
        check_is_fitted(self)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D array, got a {X.ndim}-D Dask array instead")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but GaussianMixture is expecting "
                f"{self.n_features_in_} features as input"
            )
        return _chunked_method(X, self._gpu_mixture(), what, self.n_components)

    def score_samples(self, X):
        """The log-likelihood ``log p(x)`` of each point, on the GPU.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points, one per row.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,), float32
            ``log p(x)`` under the fitted mixture, computed in float32.
        """
        if _is_dask(X):
            return self._fitted_chunks(X, "score_samples")
        X32 = self._fitted_points(X)
        return self._gpu_mixture().score(default_device(), X32, False)

    def score(self, X, y=None):
        """The mean log-likelihood of the points.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points, one per row.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        log_likelihood : float
            The mean of :meth:`score_samples` (summed in float64).
        """
        return float(np.mean(self.score_samples(X), dtype=np.float64))

    def predict(self, X):
        """The most probable component of each point.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points, one per row.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            The component labels.
        """
        if _is_dask(X):
            return self._fitted_chunks(X, "predict")
        X32 = self._fitted_points(X)
        return self._gpu_mixture().predict(default_device(), X32)

    def predict_proba(self, X):
        """The posterior probability of each component for each point.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points, one per row.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components), float32
            ``p(k | x)``: the exponential of the GPU's log-responsibilities.
        """
        if _is_dask(X):
            return self._fitted_chunks(X, "predict_proba")
        X32 = self._fitted_points(X)
        return np.exp(self._gpu_mixture().score(default_device(), X32, True))

    def sample(self, n_samples=1):
        """Draw points from the fitted mixture (on the host, with ``random_state``).

        Parameters
        ----------
        n_samples : int, default=1
            The number of points.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            The points, float64.
        y : ndarray of shape (n_samples,)
            The component of each point.
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at least "
                "one sample."
            )
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, np.asarray(self.weights_, dtype=np.float64))
        means = np.asarray(self.means_, dtype=np.float64)
        cov = np.asarray(self.covariances_, dtype=np.float64)
        parts = []
        for k, count in enumerate(counts):
            if self.covariance_type == "full":
                parts.append(rng.multivariate_normal(means[k], cov[k], int(count)))
            elif self.covariance_type == "tied":
                parts.append(rng.multivariate_normal(means[k], cov, int(count)))
            else:
                noise = rng.standard_normal(size=(int(count), means.shape[1]))
                parts.append(means[k] + noise * np.sqrt(cov[k]))
        labels = np.concatenate([np.full(int(c), k, dtype=np.int64) for k, c in enumerate(counts)])
        return np.vstack(parts), labels

    def _n_parameters(self) -> int:
        """The number of free parameters of the model."""
        k, d = self.means_.shape
        cov_params = {
            "full": k * d * (d + 1) / 2.0,
            "diag": k * d,
            "tied": d * (d + 1) / 2.0,
            "spherical": k,
        }[self.covariance_type]
        return int(cov_params + k * d + k - 1)

    def bic(self, X):
        """The Bayesian information criterion of the model on ``X`` (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points, one per row.

        Returns
        -------
        bic : float
            ``-2 * score(X) * n_samples + n_parameters * ln(n_samples)``.
        """
        log_likelihood, n = self._total_log_likelihood(X)
        return -2 * log_likelihood + self._n_parameters() * math.log(n)

    def aic(self, X):
        """The Akaike information criterion of the model on ``X`` (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points, one per row.

        Returns
        -------
        aic : float
            ``-2 * score(X) * n_samples + 2 * n_parameters``.
        """
        log_likelihood, _ = self._total_log_likelihood(X)
        return -2 * log_likelihood + 2 * self._n_parameters()

    def _total_log_likelihood(self, X: Any) -> Tuple[float, int]:
        """``sum log p(x)`` over the points (in float64), and their number."""
        log_prob = self.score_samples(X)
        return float(np.sum(log_prob, dtype=np.float64)), log_prob.shape[0]
