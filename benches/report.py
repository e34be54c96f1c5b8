"""Turns the output of `cargo bench --bench logsumexp` (or `--bench likelihood`) into docs/performance.md's
table.

    WGPU_BACKEND=vulkan cargo bench --bench logsumexp | tee bench-vulkan.log
    python3 benches/report.py bench-vulkan.log

A run filtered to the GPU benches (`-- gpu_`) leaves the CPU column empty. Prints, per function
and shape, the median (criterion's middle estimate) of the GPU kernel by timestamps (with its
throughput), the GPU with data resident by wall clock, the GPU end to end and the CPU reference.
"""
import re
import sys

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
GIB = {"B/s": 1 / 2**30, "KiB/s": 1 / 2**20, "MiB/s": 1 / 2**10, "GiB/s": 1.0}


def parse(path):
    results, name = {}, None
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^(\w+)/(\w+)/(\w+)\s*(time:.*)?$", line.strip())
        if m:
            name = m.groups()[:3]
            line = m.group(4) or ""
        t = re.search(r"time:\s+\[\S+ \S+ ([\d.]+) (\S+) ", line)
        if t and name:
            results.setdefault(name, {})["ms"] = float(t.group(1)) * UNITS[t.group(2)]
        g = re.search(r"thrpt:\s+\[\S+ \S+ ([\d.]+) (\S+) ", line)
        if g and name:
            results[name]["gib"] = float(g.group(1)) * GIB[g.group(2)]
    return results


def main():
    results = parse(sys.argv[1])
    rows = {}
    for (func, kind, shape), v in results.items():
        key = (func, shape)
        if kind.startswith("gpu_resident"):
            parts = kind.split("_", 2)
            strategy = parts[2] if len(parts) > 2 else "–"
            rows.setdefault(key, {})["resident"] = (v["ms"], v.get("gib"), strategy)
        else:
            rows.setdefault(key, {})[kind] = v["ms"]
    print("| function | shape | strategy | GPU kernel (timestamps) | GB/s | GPU resident (wall) | GPU end to end | CPU reference |")
    print("|---|---|---|---|---|---|---|---|")
    for (func, shape), r in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        ms, gib, strategy = r["resident"]
        fmt = lambda v: f"{v:.{1 if v >= 10 else 3}f} ms"
        kernel, kernel_gbs = "–", "–"
        if "gpu_kernel" in r:
            kernel = fmt(r["gpu_kernel"])
            kernel_gbs = f"{gib * ms / r['gpu_kernel'] * 1.073741824:.2f}"
        other = [fmt(r[k]) if k in r else "–" for k in ("gpu_end_to_end", "cpu_reference")]
        print(f"| {func} | {shape} | {strategy} | {kernel} | {kernel_gbs} | {fmt(ms)} | "
              f"{other[0]} | {other[1]} |")


if __name__ == "__main__":
    main()
