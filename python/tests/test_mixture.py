"""logdomain.GaussianMixture against sklearn.mixture.GaussianMixture: the constructor, the
starting parameters, the fit on iris, the evaluation methods on the same parameters (f64
references from the same float32 values, bounds as formulas of U), and scikit-learn's own
estimator checks."""

import inspect
import pickle
import warnings

import numpy as np
import pytest
from sklearn import mixture as skm
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import logdomain

from conftest import U, assert_close

TYPES = ["full", "tied", "diag", "spherical"]
INITS = ["kmeans", "k-means++", "random", "random_from_data"]
IRIS = load_iris().data


@pytest.fixture(autouse=True)
def _on_device(device):
    """Every test here runs on the device under test (a missing adapter fails, never skips)."""


def test_constructor_is_scikit_learns():
    ours = inspect.signature(logdomain.GaussianMixture.__init__).parameters
    theirs = inspect.signature(skm.GaussianMixture.__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]
    assert logdomain.GaussianMixture().get_params() == skm.GaussianMixture().get_params()


@pytest.mark.parametrize("covariance_type", TYPES)
def test_check_estimator(covariance_type):
    """scikit-learn's own checks; none may fail or be skipped (conftest sets SCIPY_ARRAY_API
    so that the array-API check runs)."""
    results = check_estimator(
        logdomain.GaussianMixture(covariance_type=covariance_type), on_fail=None
    )
    assert len(results) > 30
    bad = [
        (r["check_name"], r["status"], repr(r["exception"]))
        for r in results
        if r["status"] != "passed"
    ]
    assert not bad, bad


@pytest.mark.parametrize("init_params", INITS)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_starting_parameters_are_scikit_learns(covariance_type, init_params):
    """max_iter=0 keeps the initialisation: the same draws from the same random_state, the
    same parameters (both on the host in float64)."""
    kw = dict(
        n_components=3,
        covariance_type=covariance_type,
        init_params=init_params,
        max_iter=0,
        random_state=7,
    )
    ours = logdomain.GaussianMixture(**kw).fit(IRIS)
    theirs = skm.GaussianMixture(**kw).fit(IRIS)
    for name in ("weights_", "means_"):
        np.testing.assert_allclose(
            getattr(ours, name), getattr(theirs, name), rtol=1e-12, atol=1e-14, err_msg=name
        )
    # Variances: ours sum r (x - mu)^2 / N, scikit-learn's sum r x^2 / N - mu^2, which
    # cancels to 4 eps |x|^2 (eps of float64); relative to the smallest variance for the
    # precisions' factors, twice that for the precisions (a component of one point has
    # variance reg_covar = 1e-6).
    atol = 4 * np.finfo(np.float64).eps * (IRIS**2).max()
    rtol = 1e-12 + atol / np.min(np.abs(ours.covariances_[ours.covariances_ != 0]))
    for name, power in (("covariances_", 1), ("precisions_cholesky_", 1), ("precisions_", 2)):
        np.testing.assert_allclose(
            getattr(ours, name), getattr(theirs, name), rtol=power * rtol, atol=atol, err_msg=name
        )
    assert ours.n_iter_ == theirs.n_iter_ == 0


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_iris_lower_bound_matches_scikit_learn(covariance_type, tol):
    """The same starting parameters (k-means from random_state=0), EM to tol: the lower bounds
    within 1e-4 relative, the means within 1e-3 of the data's scale."""
    kw = dict(n_components=3, covariance_type=covariance_type, random_state=0, tol=tol)
    ours = logdomain.GaussianMixture(**kw).fit(IRIS)
    theirs = skm.GaussianMixture(**kw).fit(IRIS)
    assert ours.converged_ and theirs.converged_
    assert abs(ours.lower_bound_ - theirs.lower_bound_) <= 1e-4 * abs(theirs.lower_bound_)
    np.testing.assert_allclose(ours.means_, theirs.means_, atol=1e-3 * np.abs(IRIS).max())
    assert len(ours.lower_bounds_) == ours.n_iter_
    assert ours.lower_bounds_[-1] == ours.lower_bound_
    assert ours.n_features_in_ == 4
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(ours, name).shape == getattr(theirs, name).shape, name
        assert getattr(ours, name).dtype == np.float64, name


def test_given_starting_parameters():
    """weights_init, means_init and precisions_init, all given: both start from them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = skm.GaussianMixture(3, random_state=1, max_iter=3).fit(IRIS)
    kw = dict(
        n_components=3,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=1e-6,
    )
    ours = logdomain.GaussianMixture(**kw).fit(IRIS)
    theirs = skm.GaussianMixture(**kw).fit(IRIS)
    assert abs(ours.lower_bound_ - theirs.lower_bound_) <= 1e-4 * abs(theirs.lower_bound_)
    # The parameters are not modified by fit (a scikit-learn estimator's must not be).
    assert ours.weights_init is start.weights_


def fitted_pair(covariance_type, dtype=np.float64):
    """A scikit-learn mixture fitted on iris, and ours holding the same parameters rounded to
    float32, with a scikit-learn twin of the rounded parameters: the f64 reference of the same
    float32 values."""
    theirs = skm.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(IRIS)
    ours = logdomain.GaussianMixture(3, covariance_type=covariance_type).fit(IRIS)
    twin = clone(theirs)
    twin.fit(IRIS)
    for est in (ours, twin):
        est.weights_ = theirs.weights_.astype(np.float32).astype(np.float64)
        est.weights_ /= est.weights_.sum()
        est.means_ = theirs.means_.astype(np.float32).astype(np.float64)
        est.precisions_cholesky_ = theirs.precisions_cholesky_.astype(np.float32).astype(np.float64)
        est.covariances_ = theirs.covariances_
    return ours, twin


def score_bound(est, X):
    """log p(x) of the float32 kernel: each component's terms ln w + ln det P − d/2 ln 2π and
    ½ Σ_j (Σ_i |x_i − μ_i| |P_ij|)² rounded with (d + 2) U each (the products, the dot
    products' sums), the largest component's over the row, and the row's log-sum-exp
    (4U |log p| + U log2 k)."""
    d = X.shape[1]
    k = len(est.weights_)
    chol = est.precisions_cholesky_
    if est.covariance_type == "tied":
        chol = np.broadcast_to(chol, (k, d, d))
    elif est.covariance_type == "diag":
        chol = np.stack([np.diag(c) for c in chol])
    elif est.covariance_type == "spherical":
        chol = np.stack([np.eye(d) * c for c in chol])
    terms = np.empty((X.shape[0], k))
    for c in range(k):
        dev = np.abs(X - est.means_[c])
        quad = ((dev @ np.abs(chol[c])) ** 2).sum(axis=1)
        log_det = np.log(np.abs(np.diag(chol[c]))).sum()
        const = abs(np.log(est.weights_[c])) + abs(log_det) + d / 2 * np.log(2 * np.pi)
        terms[:, c] = const + 0.5 * quad
    ref = est.score_samples(X)
    return 4 * (d + 2) * U * terms.max(axis=1) + 4 * U * np.abs(ref) + U * np.log2(k)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_score_samples_and_proba_on_the_same_parameters(covariance_type):
    ours, twin = fitted_pair(covariance_type)
    X32 = IRIS.astype(np.float32)
    X = X32.astype(np.float64)
    got = ours.score_samples(X32)
    assert got.dtype == np.float32
    ref = twin.score_samples(X)
    bound = score_bound(twin, X)
    assert_close(got, ref, bound, "score_samples")
    # log p(k | x) = L_k − log p(x): the two terms' bounds; p(k | x) ≤ 1 scales the error.
    proba = ours.predict_proba(X32)
    assert proba.dtype == np.float32 and proba.shape == (150, 3)
    assert_close(proba, twin.predict_proba(X), 2 * bound[:, None] + 2 * U, "predict_proba")
    assert_close(ours.score(X), twin.score(X), bound.mean(), "score")
    n = len(X)
    p = twin._n_parameters()
    assert ours._n_parameters() == p
    assert_close(ours.bic(X), twin.bic(X), 2 * bound.sum(), "bic")
    assert_close(ours.aic(X), twin.aic(X), 2 * bound.sum(), "aic")
    assert abs(twin.bic(X) - twin.aic(X) - (p * np.log(n) - 2 * p)) < 1e-9
    # The labels wherever the two best components are further apart than the bounds.
    joint = twin._estimate_weighted_log_prob(X)
    top2 = np.sort(joint, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 4 * bound
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(ours.predict(X)[clear], twin.predict(X)[clear])


@pytest.mark.parametrize("covariance_type", TYPES)
def test_fit_predict_is_fit_then_predict(covariance_type):
    est = logdomain.GaussianMixture(3, covariance_type=covariance_type, random_state=2)
    labels = est.fit_predict(IRIS)
    np.testing.assert_array_equal(labels, est.predict(IRIS))
    assert set(labels) == {0, 1, 2}


@pytest.mark.parametrize("covariance_type", TYPES)
def test_sample_is_scikit_learns_draw(covariance_type):
    """The same parameters and random_state: the same points and labels."""
    theirs = skm.GaussianMixture(3, covariance_type=covariance_type, random_state=3).fit(IRIS)
    ours = logdomain.GaussianMixture(3, covariance_type=covariance_type, random_state=3)
    ours.fit(IRIS)
    for name in ("weights_", "means_", "covariances_"):
        setattr(ours, name, getattr(theirs, name))
    x0, y0 = theirs.sample(500)
    x1, y1 = ours.sample(500)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_allclose(x1, x0, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="n_samples"):
        ours.sample(0)


def test_float32_input_keeps_float32_parameters():
    X = IRIS.astype(np.float32)
    ours = logdomain.GaussianMixture(2, random_state=0).fit(X)
    theirs = skm.GaussianMixture(2, random_state=0).fit(X)
    assert ours.means_.dtype == theirs.means_.dtype == np.float32
    assert abs(ours.lower_bound_ - theirs.lower_bound_) <= 1e-4 * abs(theirs.lower_bound_)


def test_warm_start_continues():
    kw = dict(n_components=3, random_state=0, warm_start=True, max_iter=4)
    ours = logdomain.GaussianMixture(**kw)
    theirs = skm.GaussianMixture(**kw)
    for _ in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours.fit(IRIS)
            theirs.fit(IRIS)
        assert abs(ours.lower_bound_ - theirs.lower_bound_) <= 1e-4 * abs(theirs.lower_bound_)
    assert ours.converged_ == theirs.converged_


def test_n_init_keeps_the_best():
    """Three random initialisations drawn from one random_state, as scikit-learn draws them:
    the same best lower bound."""
    kw = dict(n_components=4, n_init=3, init_params="random", random_state=5, tol=1e-6)
    ours = logdomain.GaussianMixture(**kw).fit(IRIS)
    theirs = skm.GaussianMixture(**kw).fit(IRIS)
    assert abs(ours.lower_bound_ - theirs.lower_bound_) <= 1e-4 * abs(theirs.lower_bound_)
    single = logdomain.GaussianMixture(**{**kw, "n_init": 1}).fit(IRIS)
    assert ours.lower_bound_ >= single.lower_bound_


def test_not_converging_warns_as_scikit_learn():
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est = logdomain.GaussianMixture(3, max_iter=1, random_state=0).fit(IRIS)
    assert not est.converged_ and est.n_iter_ == 1


def test_verbose_prints(capsys):
    logdomain.GaussianMixture(2, verbose=2, verbose_interval=1, random_state=0).fit(IRIS)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1" in out and "lower bound" in out


def test_pipeline_grid_search_clone_pickle():
    pipe = make_pipeline(StandardScaler(), logdomain.GaussianMixture(random_state=0))
    grid = GridSearchCV(pipe, {"gaussianmixture__n_components": [1, 2, 3]}, cv=3).fit(IRIS)
    ref = GridSearchCV(
        make_pipeline(StandardScaler(), skm.GaussianMixture(random_state=0)),
        {"gaussianmixture__n_components": [1, 2, 3]},
        cv=3,
    ).fit(IRIS)
    assert grid.best_params_ == ref.best_params_
    est = logdomain.GaussianMixture(2, random_state=0).fit(IRIS)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.score_samples(IRIS), est.score_samples(IRIS))
    assert clone(est).get_params() == est.get_params()


def test_bad_input_raises_scikit_learns_errors():
    with pytest.raises(ValueError, match="n_components"):
        logdomain.GaussianMixture(n_components=0).fit(IRIS)
    with pytest.raises(ValueError, match="covariance_type"):
        logdomain.GaussianMixture(covariance_type="round").fit(IRIS)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        logdomain.GaussianMixture(5).fit(IRIS[:4])
    with pytest.raises(ValueError, match="should be normalized"):
        logdomain.GaussianMixture(2, weights_init=[0.5, 0.6]).fit(IRIS)
    with pytest.raises(ValueError, match="shape"):
        logdomain.GaussianMixture(2, means_init=np.zeros((2, 3))).fit(IRIS)
    with pytest.raises(ValueError, match="positive-definite"):
        logdomain.GaussianMixture(1, precisions_init=-np.eye(4)[None]).fit(IRIS)
    with pytest.raises(ValueError, match="NaN"):
        logdomain.GaussianMixture().fit(np.array([[0.0, 1.0], [np.nan, 2.0]]))
    with pytest.raises(ValueError, match="float32"):
        logdomain.GaussianMixture().fit(np.array([[0.0, 1.0], [1e300, 2.0]]))
    with pytest.raises(NotFittedError):
        logdomain.GaussianMixture().predict(IRIS)
    est = logdomain.GaussianMixture(2, random_state=0).fit(IRIS)
    with pytest.raises(ValueError, match="features"):
        est.predict(IRIS[:, :3])
    with (
        pytest.raises(ValueError, match="ill-defined empirical covariance"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ConvergenceWarning)  # KMeans: one distinct point
        logdomain.GaussianMixture(2, reg_covar=0, random_state=0).fit(np.ones((10, 2)))
