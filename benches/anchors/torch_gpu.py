"""PyTorch on a CUDA GPU for the log-sum-exp family at the bench shapes: median ms of
torch.logsumexp / F.log_softmax / F.softmax over rows and F.cross_entropy (class-index targets,
mean) (data resident, CUDA events, warmed up), and a device-to-device copy of the same bytes as
the bandwidth yardstick (its GB/s counts the bytes read and written).

    python3 benches/anchors/torch_gpu.py
"""
import torch
import torch.nn.functional as F

SHAPES = [(4096, 4096), (65536, 256), (256, 65536), (1 << 20, 16)]


def median_ms(fn, runs=30):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[runs // 2]


def main():
    print(f"device: {torch.cuda.get_device_name()} torch {torch.__version__}")
    print(f"{'shape':>14} {'logsumexp':>10} {'log_softmax':>12} {'softmax':>8} {'cross_ent':>10} {'copy':>8} {'copy GB/s':>10}  (ms)")
    g = torch.Generator(device="cuda").manual_seed(0)
    for rows, cols in SHAPES:
        x = torch.rand((rows, cols), device="cuda", generator=g) * 20 - 10
        y = torch.empty_like(x)
        t = torch.randint(0, cols, (rows,), device="cuda", generator=g)
        row = [
            median_ms(lambda: torch.logsumexp(x, dim=1)),
            median_ms(lambda: F.log_softmax(x, dim=1)),
            median_ms(lambda: F.softmax(x, dim=1)),
            median_ms(lambda: F.cross_entropy(x, t)),
            median_ms(lambda: y.copy_(x)),
        ]
        row.append(2 * x.numel() * 4 / (row[-1] * 1e-3) / 1e9)
        print(f"{rows:>7}x{cols:<6}" + "".join(f"{v:>11.3f}" for v in row))


if __name__ == "__main__":
    main()
