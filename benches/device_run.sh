#!/usr/bin/env bash
# One run on a lent GPU machine (the `device` tool; no network there): the kernels' bench with
# the read yardstick, PyTorch on the same GPU, the EM fit against scikit-learn on that machine's
# CPUs, and the EM / mixture / probe tests on the GPU. Binaries are built here and carried in
# .dev/ (stripped): logdomain, and the release test binaries fit, gmm, bandwidth.
#
#   cargo build --release && cargo test --release --no-run --test fit --test gmm --test bandwidth
#   mkdir -p .dev && strip -o .dev/logdomain target/release/logdomain   (and each test binary)
#   device run (carry .gl .dev): bash benches/device_run.sh
#
# Results go to $OUT (bench.txt, torch.txt, em_*.txt, tests.txt).
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export WGPU_BACKEND=vulkan
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
B=.dev/logdomain
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv \
    >"$OUT/gpu.txt" 2>&1
nproc >>"$OUT/gpu.txt"
{
    $B bench --op read --shape 4096x4096 --shape 16384x16384 --runs 20
    $B bench --op logsumexp --op log_softmax --op softmax --op cross_entropy \
        --shape 4096x4096 --shape 65536x256 --shape 256x65536 --shape 1048576x16 --runs 20
    $B bench --op logsumexp --op log_softmax --op cross_entropy --shape 8192x32000 --runs 5
    $B bench --op gmm_score_samples --shape 1000000x16 --runs 20
} >"$OUT/bench.txt" 2>&1
timeout 120 python3 benches/anchors/torch_gpu.py >"$OUT/torch.txt" 2>&1
for cov in diag full; do
    {
        timeout 200 python3 benches/anchors/sklearn_gmm.py --covariance $cov --data-out /tmp/x_$cov.npy
        for run in 1 2; do
            $B fit --input /tmp/x_$cov.npy --components 16 --covariance $cov \
                --init-gmm /tmp/x_$cov.init.json --tol 0 --max-iter 20 --output "$OUT/fit_$cov.json"
        done
    } >"$OUT/em_$cov.txt" 2>&1
done
# The tests read their fixtures through the path they were compiled at.
mkdir -p /work && ln -sfn "$PWD" /work/main
{
    for t in fit gmm bandwidth; do
        echo "== $t"
        timeout 200 .dev/$t 2>&1 | grep -E "^test |test result|panicked" | head -40
    done
} >"$OUT/tests.txt" 2>&1
echo done
