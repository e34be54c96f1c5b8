"""logdomain's logsumexp, log_softmax and softmax against SciPy's on float32 NumPy arrays: the
wall time of one call from Python (upload, kernel, readback for logdomain), best of 5, over the
last axis and over axis 0. Run from the repository root:

    WGPU_BACKEND=vulkan python python/benches/special.py
"""

import time

import numpy as np
import scipy.special as sp

import logdomain


def best_ms(f, *args, runs=5, **kwargs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f(*args, **kwargs)
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def main():
    rng = np.random.default_rng(0)
    print(f"device: {logdomain.default_device()}")
    print(
        f"{'function':<12} {'shape':<11} {'axis':>4} {'logdomain':>11} {'SciPy':>10} {'ratio':>6}"
    )
    for shape in [(4096, 4096), (65536, 256)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        for name in ["logsumexp", "log_softmax", "softmax"]:
            ours, theirs = getattr(logdomain, name), getattr(sp, name)
            for axis in (-1, 0):
                ours(x, axis=axis)  # pipelines built once
                a = best_ms(ours, x, axis=axis)
                b = best_ms(theirs, x, axis=axis)
                print(
                    f"{name:<12} {shape[0]}x{shape[1]:<6} {axis:>4} {a:>9.1f}ms {b:>8.1f}ms "
                    f"{b / a:>5.1f}x"
                )


if __name__ == "__main__":
    main()
