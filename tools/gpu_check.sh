#!/usr/bin/env bash
# The GPU checks, in one go on one lent machine (run from the checkout's root):
#   1. parity with the official fixtures on the GPU (tests/test_on_device.py, plain and fused forms);
#   2. sampling speed in fp32, bf16 and fp16, each also with torch.compile (on CUDA its
#      "reduce-overhead" mode: a CUDA graph per step) and with context reuse, against the reference
#      path, written to a results file that names the GPU;
#   3. one DDP training run of each stage over nccl, under torchrun with one process;
#   4. the GPU's name, driver and memory.
# Everything it writes goes to OUT (default: ./gpu-check). The fixtures live in ../shared beside the
# checkout; where that folder does not travel, put a copy in FIXTURES (default: .gpu/shared) and the
# script links ../shared to it.
#
#   tools/gpu_check.sh                      # on the GPU machine
#   DEVICE=cpu QUICK=1 tools/gpu_check.sh   # the same steps, small and on the CPU: a trial run here
#
# Through the device tool: first, here, `mkdir -p .gpu/shared/fixtures && cp -r ../shared/fixtures/official
# .gpu/shared/fixtures/ && echo /.gpu/ >> .git/info/exclude`; then run `tools/gpu_check.sh` with
# carry [".gpu"] (the tool sets OUT to the folder whose files come back).
set -uo pipefail
device=${DEVICE:-cuda}
out=${OUT:-gpu-check}
mkdir -p "$out"
python=${PYTHON:-python3}
status=0
step() { echo; echo "== $*"; }

if [ ! -d ../shared/fixtures ] && [ -d "${FIXTURES:-.gpu/shared}/fixtures" ]; then
    ln -s "$(cd "${FIXTURES:-.gpu/shared}" && pwd)" ../shared
fi
# The machine's torch and the package's other needs are there already; only the package itself goes in.
"$python" -c "import maskgit" 2>/dev/null || "$python" -m pip install -q --no-deps --no-build-isolation -e . \
    || { echo "installing the package failed"; exit 1; }

step "device"
if [ "$device" = cuda ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.txt"
fi
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" \
    | tee -a "$out/device.txt"

step "parity on $device"
MASKGIT_TEST_DEVICES=$device "$python" -m pytest -q -p no:cacheprovider tests/test_on_device.py 2>&1 \
    | tee "$out/parity.log" || status=1

step "sampling speed on $device"
if [ -n "${QUICK:-}" ]; then
    speed=(--batches 1 --steps 2 --paths fp32 fp32+ctx1 --no-shipped)
elif [ "$device" = cuda ]; then
    # ImageNet 256 only: each compiled path compiles for a minute or so, and one call has 10 minutes.
    speed=(--sizes 256 --batches 8 --steps 8 --no-shipped
           --paths reference fp32 bf16 fp16 fp32+compile bf16+compile fp16+compile bf16+ctx2 fp16+ctx2)
else
    speed=(--paths reference fp32 bf16 int8)
fi
"$python" benchmarks/sampling_speed.py --device "$device" "${speed[@]}" --json "$out/speed-$device.json" 2>&1 \
    | tee "$out/speed.log" || status=1

step "one DDP training run of each stage under torchrun (nccl on CUDA, gloo on the CPU)"
for stage in tokenizer transformer; do
    "$python" -m torch.distributed.run --nnodes 1 --nproc_per_node 1 --master_addr 127.0.0.1 --master_port 29517 \
        tests/_train_worker.py "$stage" "$out/ddp-$stage" '{"steps": 2, "batch_size": 4}' 2>&1 \
        | tee "$out/ddp-$stage.log" || status=1
    test -s "$out/ddp-$stage/metrics.jsonl" && echo "$stage: $(wc -l < "$out/ddp-$stage/metrics.jsonl") metrics records" \
        || { echo "$stage: no metrics written"; status=1; }
done

step "done: status $status (0: every check passed); files in $out"
exit $status
