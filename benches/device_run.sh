#!/usr/bin/env bash
# One run on a lent GPU machine (the `device` tool; no network there). Binaries are built here and
# carried in .dev/ (stripped), with the Vulkan loader's packages in .gl/ (the device README):
#
#   cargo build --release --example strategies
#   cargo test --release --no-run --test logsumexp --test likelihood --test gradients \
#       --test fit --test gmm --test bandwidth
#   mkdir -p .dev && strip -o .dev/logdomain target/release/logdomain   (likewise
#       .dev/strategies from target/release/examples/strategies, and each test binary as
#       .dev/<name> from target/release/deps/<name>-<hash>)
#   device run (carry .gl .dev): bash benches/device_run.sh [speed|em]
#
# speed (default; issue 7's real-GPU bar): every row strategy by GPU timestamps, the read and
#   copy yardsticks, the kernels' bench in f32 and f16, PyTorch on the same GPU, and the
#   log-sum-exp family's, the losses' and the gradients' tests on the GPU.
# em: the EM fit against scikit-learn on that machine's CPUs, and the EM / mixture / probe tests.
#
# Results go to $OUT.
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
# The tests read their fixtures through the path they were compiled at.
mkdir -p /work && ln -sfn "$PWD" /work/main

run_tests() {
    for t in "$@"; do
        echo "== $t"
        timeout 90 ".dev/$t" 2>&1 | grep -E "^test |test result|panicked" | head -40
    done
}

if [ "${1:-speed}" = speed ]; then
    timeout 200 .dev/strategies 4096x4096 65536x256 256x65536 1048576x16 8192x32000 \
        >"$OUT/strategies.txt" 2>&1
    {
        $B bench --op read --op copy --shape 4096x4096 --shape 16384x16384 --runs 20
        $B bench --op logsumexp --op log_softmax --op softmax --op cross_entropy \
            --shape 4096x4096 --shape 65536x256 --shape 256x65536 --shape 1048576x16 --runs 20
        $B bench --op logsumexp --op log_softmax --op cross_entropy --shape 8192x32000 --runs 5
        $B bench --f16 --op logsumexp --op log_softmax --op cross_entropy \
            --shape 4096x4096 --shape 65536x256 --shape 8192x32000 --runs 20
        $B bench --op gmm_score_samples --shape 1000000x16 --runs 20
    } >"$OUT/bench.txt" 2>&1
    timeout 120 python3 benches/anchors/torch_gpu.py >"$OUT/torch.txt" 2>&1
    run_tests logsumexp likelihood gradients >"$OUT/tests.txt" 2>&1
else
    for cov in diag full; do
        {
            timeout 200 python3 benches/anchors/sklearn_gmm.py --covariance $cov \
                --data-out /tmp/x_$cov.npy
            for run in 1 2; do
                $B fit --input /tmp/x_$cov.npy --components 16 --covariance $cov \
                    --init-gmm /tmp/x_$cov.init.json --tol 0 --max-iter 20 \
                    --output "$OUT/fit_$cov.json"
            done
        } >"$OUT/em_$cov.txt" 2>&1
    done
    run_tests fit gmm bandwidth >"$OUT/tests.txt" 2>&1
fi
echo done
