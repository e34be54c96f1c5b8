"""logdomain.GaussianMixture against sklearn.mixture.GaussianMixture: the time of a fit of a
fixed number of EM iterations (tol=0) from the same starting parameters, and the time of
score_samples, on generated data. Run from the repository root:

    WGPU_BACKEND=vulkan python python/benches/mixture.py [--n N] [--dims D] [--k K] [--iters I]
"""

import argparse
import time
import warnings

import numpy as np
from sklearn import mixture as skm
from sklearn.exceptions import ConvergenceWarning

import logdomain


def best_of(runs, f, *args):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = f(*args)
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=16)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--covariance", nargs="+", default=["full", "diag", "spherical", "tied"])
    a = p.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (a.k, a.dims))
    # float64, as a user passes it: scikit-learn computes in float64, logdomain in float32.
    X = centres[rng.integers(0, a.k, a.n)] + rng.normal(0, 1, (a.n, a.dims))
    print(f"device: {logdomain.default_device()}")
    print(f"n = {a.n}, dims = {a.dims}, k = {a.k}, {a.iters} EM iterations, best of {a.runs}")
    print(
        f"{'covariance':<10} {'sklearn fit':>12} {'logdomain fit':>14} {'ratio':>6} "
        f"{'sklearn score':>14} {'logdomain score':>16} {'ratio':>6} {'lower bound rel diff':>21}"
    )
    warnings.simplefilter("ignore", ConvergenceWarning)
    for ct in a.covariance:
        start = skm.GaussianMixture(
            a.k, covariance_type=ct, max_iter=0, random_state=0, init_params="k-means++"
        ).fit(X)
        kw = dict(
            n_components=a.k,
            covariance_type=ct,
            tol=0.0,
            max_iter=a.iters,
            weights_init=start.weights_ / start.weights_.sum(),
            means_init=start.means_,
            precisions_init=start.precisions_,
        )
        t_sk, sk = best_of(a.runs, lambda kw=kw: skm.GaussianMixture(**kw).fit(X))
        t_ld, ld = best_of(a.runs, lambda kw=kw: logdomain.GaussianMixture(**kw).fit(X))
        s_sk, _ = best_of(a.runs, sk.score_samples, X)
        s_ld, _ = best_of(a.runs, ld.score_samples, X)
        rel = abs(ld.lower_bound_ - sk.lower_bound_) / abs(sk.lower_bound_)
        print(
            f"{ct:<10} {t_sk * 1e3:>10.0f}ms {t_ld * 1e3:>12.0f}ms {t_sk / t_ld:>5.1f}x "
            f"{s_sk * 1e3:>12.1f}ms {s_ld * 1e3:>14.1f}ms {s_sk / s_ld:>5.1f}x {rel:>21.1e}"
        )


if __name__ == "__main__":
    main()
