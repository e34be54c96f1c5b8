"""scikit-learn's GaussianMixture fit as a CPU anchor for the EM bench: a fixed number of EM
iterations (tol=0) from an explicit initialisation, on a float32 blob mixture that scikit-learn
fits in float64.

    python3 benches/anchors/sklearn_gmm.py                       # n 1e6, 16 dims, k 16, diag
    python3 benches/anchors/sklearn_gmm.py --covariance full --n 20000
    python3 benches/anchors/sklearn_gmm.py --data-out /tmp/gmm.npy --lower-bounds-out lb.json

Data (numpy seed 0): `components` blobs, centres N(0, 5²) per coordinate, anisotropic
covariances, unequal sizes, offset by +3; cast to float32, then to float64 for scikit-learn.
Init: `components` distinct random data points as means, uniform weights, precisions from the
variance of the whole data (diag: 1/variance per dimension; spherical: 1/mean variance; full:
the inverse of the data covariance), the same for every component.

--data-out PATH writes the float32 data as .npy at PATH and the init as JSON beside it
(PATH with `.init.json` in place of `.npy`): `weights`, `means`, `precisions_cholesky`
(scikit-learn's `precisions_cholesky_` for that init: sqrt of the precisions for
diag/spherical, the upper triangular U with P = U U^T for full; flat, row-major), plus
`covariance_type`, `precisions` and, for diag/spherical, `covariances` (1/precisions), so the
file also reads as a mixture for `--gmm`.

--lower-bounds-out PATH writes the lower bound after each iteration as a JSON list, obtained by
refitting with warm_start=True, max_iter=1 (one E-step and one M-step per fit) after the timed
fit; it repeats the whole fit, so it is off unless asked for.

The timed fit is the first thing done with the model: time.perf_counter around one `fit`.
"""
import argparse
import json
import os
import time
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils._array_api import get_namespace

REG_COVAR = 1e-6
OFFSET = 3.0


def make_data(rng, n, d, k):
    centers = rng.normal(size=(k, d)) * 5.0
    props = rng.dirichlet(np.full(k, 2.0))
    props = 0.5 / k + 0.5 * props
    counts = np.floor(props * n).astype(int)
    counts[: n - counts.sum()] += 1
    x = np.empty((n, d), dtype=np.float64)
    start = 0
    for c in range(k):
        a = rng.normal(size=(d, d)) * rng.uniform(0.2, 0.5)
        a += np.diag(rng.uniform(0.3, 1.0, size=d))
        m = counts[c]
        x[start : start + m] = rng.standard_normal(size=(m, d)) @ a.T + centers[c]
        start += m
    x += OFFSET
    x = x[rng.permutation(n)]
    return x.astype(np.float32)


def make_init(rng, x64, cov_type, k):
    n, d = x64.shape
    idx = rng.choice(n, size=k, replace=False)
    means = x64[idx].copy()
    weights = np.full(k, 1.0 / k)
    var = x64.var(axis=0)
    if cov_type == "diag":
        prec = np.tile(1.0 / var, (k, 1))
    elif cov_type == "spherical":
        prec = np.full(k, 1.0 / var.mean())
    else:
        p = np.linalg.inv(np.cov(x64.T, bias=True))
        p = 0.5 * (p + p.T)
        prec = p if cov_type == "tied" else np.tile(p, (k, 1, 1))
    return weights, means, prec


def model(args, init, **kw):
    weights, means, prec = init
    return GaussianMixture(
        n_components=args.components,
        covariance_type=args.covariance,
        reg_covar=REG_COVAR,
        weights_init=weights,
        means_init=means,
        precisions_init=prec,
        random_state=0,
        **kw,
    )


def init_cholesky(args, init, x64):
    """scikit-learn's precisions_cholesky_ for precisions_init."""
    g = model(args, init, tol=0.0, max_iter=1)
    xp, _ = get_namespace(x64)
    g._check_parameters(x64, xp=xp)
    g._initialize_parameters(x64, np.random.RandomState(0), xp=xp)
    return np.asarray(g.precisions_cholesky_)


def flat(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dims", type=int, default=16)
    ap.add_argument("--components", type=int, default=16)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--covariance", choices=["diag", "spherical", "full", "tied"], default="diag")
    ap.add_argument("--lower-bounds-out", metavar="PATH")
    ap.add_argument("--data-out", metavar="PATH")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x = make_data(rng, args.n, args.dims, args.components)
    x64 = x.astype(np.float64)
    init = make_init(rng, x64, args.covariance, args.components)

    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    print(
        f"shape {args.n} x {args.dims}, {args.components} components, covariance "
        f"{args.covariance}, {args.iters} iterations (tol=0)"
    )

    gm = model(args, init, tol=0.0, max_iter=args.iters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        gm.fit(x64)
        wall = time.perf_counter() - t0
    print(f"fit wall time {wall:.3f} s, {1e3 * wall / max(gm.n_iter_, 1):.1f} ms per iteration")
    print(f"final lower_bound_ {gm.lower_bound_:.12g}, n_iter_ {gm.n_iter_}")

    if args.data_out:
        np.save(args.data_out, x)
        base = args.data_out[:-4] if args.data_out.endswith(".npy") else args.data_out
        init_path = base + ".init.json"
        weights, means, prec = init
        out = {
            "covariance_type": args.covariance,
            "n": args.n,
            "dims": args.dims,
            "n_components": args.components,
            "reg_covar": REG_COVAR,
            "weights": flat(weights),
            "means": flat(means),
            "precisions": flat(prec),
            "precisions_cholesky": flat(init_cholesky(args, init, x64)),
        }
        if args.covariance not in ("full", "tied"):
            out["covariances"] = flat(1.0 / prec)
        with open(init_path, "w") as f:
            json.dump(out, f)
            f.write("\n")
        print(f"wrote {args.data_out} and {init_path}")

    if args.lower_bounds_out:
        ws = model(args, init, tol=0.0, max_iter=1, warm_start=True)
        lbs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(args.iters):
                ws.fit(x64)
                lbs.append(float(ws.lower_bound_))
        rel = abs(lbs[-1] - gm.lower_bound_) / abs(gm.lower_bound_)
        msg = f"warm-start history: last vs fit's lower_bound_ rel diff {rel:.3g}"
        if hasattr(gm, "lower_bounds_"):
            dh = np.abs(np.asarray(gm.lower_bounds_) - np.asarray(lbs)).max()
            msg += f", max |fit's lower_bounds_ - history| {dh:.3g}"
        print(msg)
        with open(args.lower_bounds_out, "w") as f:
            json.dump(lbs, f)
            f.write("\n")
        print(f"wrote {args.lower_bounds_out} ({len(lbs)} lower bounds)")


if __name__ == "__main__":
    main()
