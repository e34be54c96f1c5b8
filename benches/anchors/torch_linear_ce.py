"""PyTorch on the CPU as context for the fused linear cross-entropy: the materialised
`F.cross_entropy(h @ W.T, t)` forward, and forward + backward (gradients of h and W), on the
shape of `cargo run --release --example linear_ce`.

Time: median of --reps runs after one warm-up. Memory: the process's peak resident set
(`ru_maxrss`) above what it held once the inputs existed, each measurement in a fresh process
so that one peak does not hide the next.

    python benches/anchors/torch_linear_ce.py [--tokens 4096] [--dims 1024] [--vocab 32000]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(tokens, dims, vocab, backward, reps):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    h = (torch.rand(tokens, dims) - 0.5) * 2.0
    w = (torch.rand(vocab, dims) - 0.5) * 0.2
    t = torch.arange(tokens) * 7919 % vocab
    h.requires_grad_(backward)
    w.requires_grad_(backward)
    base = rss_mib()

    def run():
        loss = F.cross_entropy(h @ w.T, t)
        if backward:
            loss.backward()
            h.grad = None
            w.grad = None
        return loss

    run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": statistics.median(times),
        "peak_mib_above_inputs": peak - base,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--dims", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--one", choices=["forward", "backward"])
    a = p.parse_args()
    if a.one:
        r = measure(a.tokens, a.dims, a.vocab, a.one == "backward", a.reps)
        print(json.dumps(r))
        return
    flops = 2.0 * a.tokens * a.dims * a.vocab
    print(f"tokens {a.tokens}, dims {a.dims}, vocab {a.vocab}; median of {a.reps}")
    for what, products in (("forward", 1), ("backward", 3)):
        out = subprocess.run(
            [sys.executable, __file__, "--one", what, "--tokens", str(a.tokens), "--dims",
             str(a.dims), "--vocab", str(a.vocab), "--reps", str(a.reps)],
            capture_output=True, text=True, check=True,
        )
        r = json.loads(out.stdout)
        name = "torch forward" if what == "forward" else "torch forward + backward"
        print(
            f"{name:<34} {r['seconds'] * 1e3:>10.1f} ms {products * flops / r['seconds'] / 1e9:>8.1f} "
            f"GFLOP/s {r['peak_mib_above_inputs']:>10.1f} MiB peak above the inputs "
            f"(torch {r['torch']}, {r['threads']} threads)"
        )


if __name__ == "__main__":
    main()
