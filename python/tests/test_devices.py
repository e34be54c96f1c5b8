"""Devices, adapters, threads and the GIL."""

import os
import threading
import time

import numpy as np
import pytest
import scipy.special as sp

import logdomain


def test_devices_lists_the_adapters(device):
    listed = logdomain.devices()
    assert listed, "devices() is empty while a device exists"
    for a in listed:
        assert set(a) == {"name", "backend", "device_type", "driver", "features"}
    assert any(a["name"] == device.name for a in listed)
    assert all(a["backend"] == device.backend for a in logdomain.devices(device.backend))


def test_device_by_backend_and_adapter_name(device):
    d = logdomain.Device(backend=device.backend, adapter=device.name[:5].upper())
    assert (d.name, d.backend) == (device.name, device.backend)
    assert d.device_type in {"discretegpu", "integratedgpu", "cpu", "virtualgpu", "other"}
    assert isinstance(d.driver, str) and isinstance(d.features, list)
    assert device.name in repr(d)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(
        logdomain.logsumexp(x, axis=1, device=d), logdomain.logsumexp(x, axis=1, device=device)
    )


def test_the_environment_picks_the_default_backend(device):
    want = os.environ.get("WGPU_BACKEND")
    if want is None:
        pytest.fail(
            "run the Python tests with WGPU_BACKEND=vulkan or WGPU_BACKEND=gl", pytrace=False
        )
    assert device.backend == want


def test_device_errors():
    with pytest.raises(ValueError, match="unknown backend"):
        logdomain.Device(backend="cuda")
    with pytest.raises(logdomain.NoAdapterError, match="apt-get install"):
        logdomain.Device(adapter="no adapter is called this")
    assert issubclass(logdomain.NoAdapterError, RuntimeError)
    assert issubclass(logdomain.DeviceError, RuntimeError)


def test_default_device_is_created_once():
    seen = []
    threads = [
        threading.Thread(target=lambda: seen.append(logdomain.default_device())) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(d is seen[0] for d in seen)


def test_threads_share_a_device(device, rng):
    xs = [(rng.standard_normal((64, 300)) * 3).astype(np.float32) for _ in range(8)]
    alone = [logdomain.log_softmax(x, axis=0, device=device) for x in xs]
    results = [None] * len(xs)
    errors = []

    def work(i):
        try:
            for _ in range(3):
                results[i] = logdomain.log_softmax(xs[i], axis=0, device=device)
                logdomain.cross_entropy(xs[i][:, :10].T.copy(), np.zeros(10, int), device=device)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for a, r in zip(alone, results):
        np.testing.assert_array_equal(a, r)  # the same bits as alone


def test_the_gil_is_released_while_the_gpu_works(device, rng):
    x = rng.standard_normal((1024, 4096)).astype(np.float32)
    start = time.perf_counter()
    logdomain.softmax(x, axis=1, device=device)
    alone = time.perf_counter() - start
    stamps = []
    done = threading.Event()

    def work():
        logdomain.softmax(x, axis=1, device=device)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    gaps = np.diff(stamps)
    # Holding the GIL for the call would stop this loop for about the call's duration.
    assert len(stamps) > 3 and gaps.max() < max(alone / 2, 0.05), (alone, gaps.max())


def test_results_do_not_alias_inputs(device):
    x = np.zeros((2, 3), np.float32)
    s = logdomain.softmax(x, axis=1, device=device)
    s[:] = 7
    assert np.all(x == 0)
    np.testing.assert_allclose(logdomain.softmax(x, axis=1), sp.softmax(x, axis=1), rtol=1e-6)
