"""Turns the output of `cargo bench --bench logsumexp` into the README's table.

    WGPU_BACKEND=vulkan cargo bench --bench logsumexp | tee bench-vulkan.log
    python3 benches/report.py bench-vulkan.log

A run filtered to the GPU benches (`-- gpu_`) leaves the CPU column empty. Prints, per function
and shape, the median (criterion's middle estimate) of the GPU kernel with
data resident, the GPU end to end and the CPU reference, with the resident throughput.
"""
import re
import sys

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
GIB = {"B/s": 1 / 2**30, "KiB/s": 1 / 2**20, "MiB/s": 1 / 2**10, "GiB/s": 1.0}


def parse(path):
    results, name = {}, None
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^(\w+)/(\w+)/(\d+x\d+)\s*(time:.*)?$", line.strip())
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
            rows.setdefault(key, {})["resident"] = (v["ms"], v.get("gib"), kind.split("_", 2)[2])
        else:
            rows.setdefault(key, {})[kind] = v["ms"]
    print("| function | shape | strategy | GPU resident | GB/s | GPU end to end | CPU reference |")
    print("|---|---|---|---|---|---|---|")
    for (func, shape), r in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        ms, gib, strategy = r["resident"]
        other = [f"{r[k]:.1f} ms" if k in r else "–" for k in ("gpu_end_to_end", "cpu_reference")]
        digits = 1 if ms >= 10 else 3
        print(f"| {func} | {shape} | {strategy} | {ms:.{digits}f} ms | {gib * 1.073741824:.2f} | "
              f"{other[0]} | {other[1]} |")


if __name__ == "__main__":
    main()
