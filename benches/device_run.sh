#!/usr/bin/env bash
# One run on a lent GPU machine (the `device` tool; no network there). Binaries are built here and
# carried in .dev/ (stripped), with the Vulkan loader's packages in .gl/ (the device README):
#
#   cargo build --release --example strategies
#   cargo test --release --no-run --test logsumexp --test likelihood   (em mode: --test fit
#       --test gmm --test bandwidth)
#   mkdir -p .dev && strip -o .dev/logdomain target/release/logdomain   (likewise
#       .dev/strategies from target/release/examples/strategies, and each test binary as
#       .dev/<name> from target/release/deps/<name>-<hash>)
#   device run (carry .gl .dev): bash benches/device_run.sh [speed|em]
#
# speed (default; issue 7's real-GPU bar): every row strategy by GPU timestamps, the 16-byte
#   read and copy yardsticks, softmax's bench (each shape a process of its own), and the
#   log-sum-exp family's and the losses' tests on the GPU; with SPEED_FULL=1 also the 4-byte
#   yardsticks, cross-entropy, the mixture score and PyTorch on the same GPU.
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
        timeout "${TEST_TIMEOUT:-90}" ".dev/$t" 2>&1 | grep -E "^test |test result|panicked" | head -40
    done
}

if [ "${1:-speed}" = speed ]; then
    timeout 70 .dev/strategies 4096x4096 65536x256 256x65536 1048576x16 8192x32000 \
        >"$OUT/strategies.txt" 2>&1
    {
        # Each op and shape in a process of its own: long processes overstate the ops that
        # write every entry. The 16-byte-word yardsticks on 1 GiB (the 4-byte ones and
        # PyTorch: SPEED_FULL=1).
        for op in read_vec4 copy_vec4; do
            timeout 20 $B bench --op $op --shape 16384x16384 --runs 3
        done
        for shape in 4096x4096 65536x256 256x65536 1048576x16; do
            timeout 12 $B bench --op softmax --shape $shape --runs 10
        done
        if [ -n "${SPEED_FULL:-}" ]; then
            timeout 40 $B bench --op read --op copy --shape 4096x4096 --shape 16384x16384 \
                --runs 3
            timeout 30 $B bench --op cross_entropy --shape 4096x4096 --shape 65536x256 \
                --shape 256x65536 --shape 1048576x16 --runs 10
            timeout 15 $B bench --op gmm_score_samples --shape 1000000x16 --runs 10
            timeout 60 python3 benches/anchors/torch_gpu.py >"$OUT/torch.txt" 2>&1
        fi
    } >"$OUT/bench.txt" 2>&1
    TEST_TIMEOUT=45 run_tests logsumexp likelihood >"$OUT/tests.txt" 2>&1
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
