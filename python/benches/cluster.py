"""GaussianMixture on a two-worker dask.distributed LocalCluster (one worker on lavapipe, one on
llvmpipe) against the same fit in this process: the wall time of fit (tol=0, a fixed number of
EM iterations, the same starting parameters) and the largest relative difference of the
per-iteration lower bounds. Run from the repository root:

    python python/benches/cluster.py [--n N] [--dims D] [--k K] [--iters I] [--chunk C]
"""

import argparse
import time
import warnings

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning

import logdomain


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=400_000)
    p.add_argument("--dims", type=int, default=16)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--chunk", type=int, default=20_000)
    p.add_argument("--covariance", default="diag")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (a.k, a.dims))
    X = centres[rng.integers(0, a.k, a.n)] + rng.normal(0, 1, (a.n, a.dims))
    start = logdomain.GaussianMixture(
        a.k, covariance_type=a.covariance, max_iter=0, random_state=0
    ).fit(X)
    kw = dict(
        n_components=a.k,
        covariance_type=a.covariance,
        tol=0.0,
        max_iter=a.iters,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    warnings.simplefilter("ignore", ConvergenceWarning)
    t = time.perf_counter()
    mem = logdomain.GaussianMixture(**kw).fit(X)
    t_mem = time.perf_counter() - t

    cluster = LocalCluster(
        n_workers=0, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    for name, backend in {"lavapipe": "vulkan", "llvmpipe": "gl"}.items():
        options = dict(cluster.new_spec["options"], env={"WGPU_BACKEND": backend}, name=name)
        cluster.worker_spec[name] = {"cls": cluster.new_spec["cls"], "options": options}
    cluster.scale(2)
    with Client(cluster) as client:
        client.wait_for_workers(2)
        dX = da.from_array(X, chunks=(a.chunk, a.dims)).persist()
        client.run(lambda: str(logdomain.default_device()))  # each worker opens its device
        t = time.perf_counter()
        dist = logdomain.GaussianMixture(**kw).fit(dX)
        t_dist = time.perf_counter() - t
    cluster.close()
    rel = np.max(
        np.abs(np.subtract(dist.lower_bounds_, mem.lower_bounds_)) / np.abs(mem.lower_bounds_)
    )
    print(f"in this process: {logdomain.default_device()}")
    print(
        f"n = {a.n}, dims = {a.dims}, k = {a.k}, {a.covariance}, {a.iters} EM iterations, "
        f"chunks of {a.chunk}"
    )
    print(f"in-process fit       {t_mem:8.2f} s")
    print(f"two-worker cluster   {t_dist:8.2f} s  (lavapipe + llvmpipe workers, data persisted)")
    print(f"lower bounds, largest relative difference {rel:.1e}")


if __name__ == "__main__":
    main()
