"""Issue 7's table in one command: our kernels on the software adapters next to what a user
without a GPU would run instead (JAX and SciPy on the CPU; scikit-learn for the mixture), same
machine, same sitting.

    python3 -m venv /tmp/anchors && /tmp/anchors/bin/pip install -q numpy scipy jax scikit-learn
    cargo build --release
    /tmp/anchors/bin/python benches/compare.py > compare.md

For each backend (lavapipe through Vulkan, llvmpipe through GL) it runs
`target/release/logdomain --backend B bench --json` on the ops and shapes below, f32 and f16
inputs, plus the yardsticks: a plain read of the same number of bytes on the same adapter (the
faster of `--op read`, 4-byte words, and `--op read_vec4`, 16-byte words) and a copy, a read and
a write of every word (the faster of `--op copy` and `--op copy_vec4`). Our time is the GPU
kernel (timestamps) with data resident; "of yardstick" is the yardstick's time over ours (1.0 =
as fast as the plainest kernel moving the same bytes): for logsumexp and cross-entropy, one read
of the input; for softmax and log_softmax, which read the input twice and write as much, a read
plus a copy (f16 input: a copy of the f32 output's words, as two reads of half the bytes cost
one).
The anchors are timed in this process with data in memory, jit-compiled and warmed up (median
of 7): jax.nn.logsumexp / log_softmax / softmax, cross-entropy as JAX users write it
(mean of −take_along_axis(log_softmax)), scipy.special's, and sklearn's
GaussianMixture.score_samples (16 diagonal components, 10^6 points of 16 dimensions). "vs JAX" is
our time over JAX's (≤ 1 is the issue's bar); "speed-up" scikit-learn's time over ours.
Markdown on stdout, progress on stderr.
"""
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special as sp

jax.config.update("jax_platforms", "cpu")

SHAPES = [(4096, 4096), (65536, 256), (256, 65536), (1 << 20, 16)]
OPS = ["logsumexp", "log_softmax", "softmax", "cross_entropy"]
F16_OPS = ["logsumexp", "log_softmax", "softmax", "cross_entropy"]
GMM_SHAPE = (1_000_000, 16)
BACKENDS = [("vulkan", "lavapipe"), ("gl", "llvmpipe")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "logdomain")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def median_ms(fn, runs=7):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[runs // 2] * 1e3


def anchors():
    """{(op, rows, cols): {"jax": ms, "scipy": ms}} and sklearn's score_samples time."""
    rng = np.random.default_rng(0)
    jl = {
        "logsumexp": jax.jit(lambda a: jax.nn.logsumexp(a, axis=1)),
        "log_softmax": jax.jit(lambda a: jax.nn.log_softmax(a, axis=1)),
        "softmax": jax.jit(lambda a: jax.nn.softmax(a, axis=1)),
        "cross_entropy": jax.jit(
            lambda a, t: -jnp.take_along_axis(jax.nn.log_softmax(a, axis=1), t[:, None], 1).mean()
        ),
    }
    out = {}
    for rows, cols in SHAPES:
        log(f"anchors {rows}x{cols}")
        x = rng.uniform(-10, 10, (rows, cols)).astype(np.float32)
        t = (np.arange(rows) * 7919 % cols).astype(np.int32)
        xj, tj = jnp.asarray(x), jnp.asarray(t)
        scipy_fns = {
            "logsumexp": lambda: sp.logsumexp(x, axis=1),
            "log_softmax": lambda: sp.log_softmax(x, axis=1),
            "softmax": lambda: sp.softmax(x, axis=1),
            "cross_entropy": lambda: -np.take_along_axis(
                sp.log_softmax(x, axis=1), t[:, None], 1
            ).mean(),
        }
        for op in OPS:
            args = (xj, tj) if op == "cross_entropy" else (xj,)
            out[(op, rows, cols)] = {
                "jax": median_ms(lambda: jl[op](*args).block_until_ready()),
                "scipy": median_ms(scipy_fns[op], runs=3),
            }
    skl = None
    try:
        from sklearn.mixture import GaussianMixture

        n, d = GMM_SHAPE
        k = 16
        log("anchors sklearn score_samples")
        pts = rng.uniform(-10, 10, (n, d)).astype(np.float32)
        g = GaussianMixture(k, covariance_type="diag")
        g.weights_ = np.full(k, 1.0 / k)
        g.means_ = rng.uniform(-2, 2, (k, d))
        g.covariances_ = rng.uniform(0.5, 2.0, (k, d))
        g.precisions_cholesky_ = 1.0 / np.sqrt(g.covariances_)
        skl = median_ms(lambda: g.score_samples(pts), runs=3)
    except ImportError:
        log("scikit-learn not installed: no mixture anchor")
    return out, skl


def ours(backend):
    """{(op, rows, cols, f16): row} from the CLI's JSON, and the adapter's name."""
    results, adapter = {}, None

    def run(extra):
        nonlocal adapter
        cmd = [BIN, "--backend", backend, "bench", "--json", "--runs", "5"] + extra
        log(" ".join(cmd[1:]))
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        doc = json.loads(res.stdout)
        adapter = doc["adapter"]
        return doc["results"]

    shapes = [a for r, c in SHAPES for a in ("--shape", f"{r}x{c}")]
    yardsticks = ["read", "read_vec4", "copy", "copy_vec4"]
    for f16, ops in [(False, OPS + yardsticks), (True, F16_OPS)]:
        args = [a for op in ops for a in ("--op", op)] + shapes + (["--f16"] if f16 else [])
        for r in run(args):
            op = r["op"].removesuffix("_f16")
            results[(op, r["rows"], r["cols"], f16)] = r
    # The read yardstick for f16 inputs: half the words of each shape.
    half = [a for r, c in SHAPES for a in ("--shape", f"{r}x{c // 2}")]
    for r in run(["--op", "read", "--op", "read_vec4"] + half):
        results[(r["op"], r["rows"], r["cols"] * 2, True)] = r
    gmm = ["--op", "gmm_score_samples", "--shape", f"{GMM_SHAPE[0]}x{GMM_SHAPE[1]}"]
    for f16 in (False, True):
        for r in run(gmm + (["--f16"] if f16 else [])):
            results[("gmm_score_samples", r["rows"], r["cols"], f16)] = r
    return results, adapter


def yardstick(res, op, rows, cols, f16):
    """The yardstick's ms for `op` on one adapter's results, or None."""
    def best(probe, f16):
        times = [
            r["gpu_ms"]
            for p in (probe, probe + "_vec4")
            if (r := res.get((p, rows, cols, f16))) is not None
        ]
        return min(times) if times else None

    read, copy = best("read", f16), best("copy", False)
    if op in ("logsumexp", "cross_entropy"):
        return read
    if f16:
        return copy
    return read + copy if read and copy else None


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: run `cargo build --release` first")
    anchor, skl = anchors()
    per_backend = {b: ours(b) for b, _ in BACKENDS}
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"Generated {stamp} by `benches/compare.py`.\n")
    for b, name in BACKENDS:
        print(f"- {name}: {per_backend[b][1]}")
    versions = f"JAX {jax.__version__}, SciPy {__import__('scipy').__version__}"
    print(f"- {versions}, NumPy {np.__version__}\n")
    head = "| op | shape | input |"
    rule = "|---|---|---|"
    for _, name in BACKENDS:
        head += f" {name} ms | {name} of yardstick | {name} vs JAX |"
        rule += "---|---|---|"
    print(head + " JAX ms | SciPy ms |")
    print(rule + "---|---|")
    for op in OPS:
        for rows, cols in SHAPES:
            for f16 in (False, True):
                if f16 and op not in F16_OPS:
                    continue
                a = anchor[(op, rows, cols)]
                line = f"| {op} | {rows}x{cols} | {'f16' if f16 else 'f32'} |"
                for b, _ in BACKENDS:
                    res = per_backend[b][0]
                    r = res.get((op, rows, cols, f16))
                    if r is None:
                        line += " – | – | – |"
                        continue
                    yard = yardstick(res, op, rows, cols, f16)
                    frac = f"{yard / r['gpu_ms']:.2f}" if yard else "–"
                    line += f" {r['gpu_ms']:.1f} | {frac} | {r['gpu_ms'] / a['jax']:.2f} |"
                print(line + f" {a['jax']:.1f} | {a['scipy']:.1f} |")
    print()
    # The yardsticks themselves on the f32 input: a plain read and a copy on each adapter, in
    # 4-byte and 16-byte words, and one CPU core summing / copying the same words (the CLI's CPU
    # column).
    for probe in ("read", "read_vec4", "copy", "copy_vec4"):
        print(
            f"| {probe} yardstick | "
            + " | ".join(f"{n} ms | {n} GB/s" for _, n in BACKENDS)
            + " | one CPU core ms | CPU GB/s |"
        )
        print("|---|" + "---|---|" * len(BACKENDS) + "---|---|")
        for rows, cols in SHAPES:
            cells, cpu = [], None
            for b, _ in BACKENDS:
                r = per_backend[b][0].get((probe, rows, cols, False))
                cells += [f"{r['gpu_ms']:.1f}", f"{r['gb_per_s']:.1f}"] if r else ["–", "–"]
                cpu = r["cpu_reference_ms"] if r else cpu
            moved = rows * cols * 4 * (2 if probe.startswith("copy") else 1)
            gbs = f"{moved / cpu / 1e6:.1f}" if cpu else "–"
            cpu_ms = f"{cpu:.1f}" if cpu else "–"
            print(f"| {rows}x{cols} | " + " | ".join(cells) + f" | {cpu_ms} | {gbs} |")
        print()
    print(
        "| op | shape | input | "
        + " | ".join(f"{name} ms | {name} speed-up" for _, name in BACKENDS)
        + " | scikit-learn ms |"
    )
    print("|---|---|---|" + "---|---|" * len(BACKENDS) + "---|")
    n, d = GMM_SHAPE
    for f16 in (False, True):
        cells = []
        for b, _ in BACKENDS:
            r = per_backend[b][0].get(("gmm_score_samples", n, d, f16))
            if r is None:
                cells += ["–", "–"]
                continue
            cells.append(f"{r['gpu_ms']:.1f}")
            cells.append(f"{skl / r['gpu_ms']:.1f}×" if skl else "–")
        sk = f"{skl:.1f}" if skl else "–"
        kind = "f16" if f16 else "f32"
        head = f"| gmm_score_samples (k 16, diag) | {n}x{d} | {kind} | "
        print(head + " | ".join(cells) + f" | {sk} |")

if __name__ == "__main__":
    main()
