"""logdomain.dask and GaussianMixture on a real cluster: a dask.distributed LocalCluster of two
worker processes on this machine (loopback only), one on lavapipe (WGPU_BACKEND=vulkan) and
one on llvmpipe (WGPU_BACKEND=gl), each with its own device; data 20 or more chunks long; the
distributed results against the in-memory ones; a worker killed mid-computation."""

import os
import threading
import time
import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.special as sp
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning

import logdomain
import logdomain.dask as ldd

from conftest import U, assert_close
from test_states import lse_bound

WORKERS = {"lavapipe": "vulkan", "llvmpipe": "gl"}


@pytest.fixture(scope="module")
def client(device):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cluster's port and memory notices
        cluster = LocalCluster(
            n_workers=0,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        )
    # One worker process per software adapter: the environment picks each worker's device.
    for name, backend in WORKERS.items():
        spec = {"cls": cluster.new_spec["cls"], "options": dict(cluster.new_spec["options"])}
        spec["options"]["env"] = {"WGPU_BACKEND": backend}
        spec["options"]["name"] = name
        cluster.worker_spec[name] = spec
    cluster.scale(len(WORKERS))
    c = Client(cluster)
    c.wait_for_workers(len(WORKERS), timeout=120)
    yield c
    c.close()
    cluster.close()


def worker_device():
    return str(logdomain.default_device())


def test_each_worker_has_its_own_adapter(client):
    devices = client.run(worker_device)
    backends = {d.split('backend="')[1].split('"')[0] for d in devices.values()}
    assert backends == set(WORKERS.values()), devices


def test_reductions_on_the_cluster(client, rng):
    x = (rng.standard_normal((8000, 64)) * 10).astype(np.float32)
    dx = da.from_array(x, chunks=(250, 64))  # 32 chunks along the reduced axis
    x64 = x.astype(np.float64)
    got = ldd.logsumexp(dx, axis=0).compute()
    assert_close(got, sp.logsumexp(x64, axis=0), lse_bound(x64, 0, 32), "logsumexp axis 0")
    got = ldd.logsumexp(dx).compute()
    assert_close(got, sp.logsumexp(x64), lse_bound(x64, None, 32), "logsumexp of all")
    got = ldd.log_softmax(dx, axis=0).compute()
    ref = sp.log_softmax(x64, axis=0)
    assert_close(got, ref, 8 * U * (np.abs(x64) + np.abs(x64.max(0)) + 40), "log_softmax")
    t = rng.integers(0, 64, 8000)
    loss = ldd.cross_entropy(dx, da.from_array(t, chunks=250)).compute()
    per = logdomain.cross_entropy(x, t, reduction="none")
    assert_close(loss, logdomain.cross_entropy(x, t), 8 * U * np.abs(per).mean() * 16)


def test_mixture_fit_on_the_cluster_equals_the_in_memory_fit(client, rng):
    centres = rng.normal(0, 4, (4, 5))
    X = centres[rng.integers(0, 4, 20000)] + rng.normal(0, 1, (20000, 5))
    start = logdomain.GaussianMixture(4, max_iter=0, init_params="random", random_state=0)
    start.fit(X)
    kw = dict(
        n_components=4,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=0.0,
        max_iter=12,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mem = logdomain.GaussianMixture(**kw).fit(X)
        dist = logdomain.GaussianMixture(**kw).fit(da.from_array(X, chunks=(1000, 5)))
    np.testing.assert_allclose(dist.lower_bounds_, mem.lower_bounds_, rtol=1e-6)
    labels = dist.predict(da.from_array(X, chunks=(1000, 5))).compute()
    assert (labels == mem.predict(X)).mean() > 0.999


def test_a_killed_worker_loses_nothing(client, rng):
    """The llvmpipe worker's process ends mid-computation (os._exit from a timer in it); Dask
    recomputes its chunks on the other worker and on the restarted one, and the result is the
    in-memory one. The worker's process id shows that it did end."""
    before = pids(client)
    x = (rng.standard_normal((6000, 32)) * 5).astype(np.float32)
    slow = da.from_array(x, chunks=(100, 32)).map_blocks(_slowly, dtype=np.float32)
    future = client.compute(ldd.logsumexp(slow, axis=0))
    victim = [addr for addr, (name, _) in before.items() if name == "llvmpipe"]
    client.run(_exit_soon, workers=victim)
    got = future.result(timeout=300)
    x64 = x.astype(np.float64)
    assert_close(got, sp.logsumexp(x64, axis=0), lse_bound(x64, 0, 60), "after the kill")
    client.wait_for_workers(len(WORKERS), timeout=120)
    after = {name: pid for name, pid in pids(client).values()}
    assert after["llvmpipe"] != dict(before.values())["llvmpipe"], "the worker did not end"
    assert after["lavapipe"] == dict(before.values())["lavapipe"]


def pids(client):
    return client.run(lambda dask_worker: (dask_worker.name, os.getpid()))


def _exit_soon():
    threading.Timer(0.5, os._exit, args=(1,)).start()


def _slowly(block):
    time.sleep(0.1)  # 60 chunks: at least 3 s on two workers; the kill comes after 0.5 s
    return block
