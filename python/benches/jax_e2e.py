"""Issue 25's end-to-end table: logdomain against JAX on the CPU, each from a float32 NumPy
array to a NumPy result (for logdomain: upload, kernel, readback through the blocking API; for
JAX: the jit-compiled function on the array, the result converted back with np.asarray), median
of 7 after one warm-up call, over the last axis, at the issue's four shapes. Cross-entropy is
PyTorch's mean over rows of integer targets (JAX: mean of -take_along_axis(log_softmax)).
Run from the repository root with the package installed (`pip install ./python`) and JAX:

    WGPU_BACKEND=vulkan python python/benches/jax_e2e.py
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import logdomain

jax.config.update("jax_platforms", "cpu")

SHAPES = [(4096, 4096), (65536, 256), (256, 65536), (1 << 20, 16)]


def median_ms(f, *args, runs=7):
    f(*args)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t)
    return sorted(times)[runs // 2] * 1e3


def main():
    rng = np.random.default_rng(0)
    jitted = {
        "logsumexp": jax.jit(lambda a: jax.nn.logsumexp(a, axis=1)),
        "log_softmax": jax.jit(lambda a: jax.nn.log_softmax(a, axis=1)),
        "softmax": jax.jit(lambda a: jax.nn.softmax(a, axis=1)),
        "cross_entropy": jax.jit(
            lambda a, t: -jnp.take_along_axis(jax.nn.log_softmax(a, axis=1), t[:, None], 1).mean()
        ),
    }
    ours = {
        "logsumexp": lambda x, t: logdomain.logsumexp(x, axis=1),
        "log_softmax": lambda x, t: logdomain.log_softmax(x, axis=1),
        "softmax": lambda x, t: logdomain.softmax(x, axis=1),
        "cross_entropy": lambda x, t: logdomain.cross_entropy(x, t),
    }
    print(f"device: {logdomain.default_device()}; JAX {jax.__version__}, NumPy {np.__version__}")
    print()
    print("| op | shape | logdomain ms | JAX ms | logdomain / JAX |")
    print("|---|---|---|---|---|")
    for rows, cols in SHAPES:
        x = rng.uniform(-10, 10, (rows, cols)).astype(np.float32)
        t = (np.arange(rows) * 7919 % cols).astype(np.int64)
        for op in ["logsumexp", "log_softmax", "softmax", "cross_entropy"]:
            args = (x, t) if op == "cross_entropy" else (x,)
            a = median_ms(ours[op], x, t)
            b = median_ms(lambda f, *v: np.asarray(f(*v)), jitted[op], *args)
            print(f"| {op} | {rows}x{cols} | {a:.1f} | {b:.1f} | {a / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
