#!/usr/bin/env bash
# Run ON THE DEVICE MACHINE (the `device` tool's run, carry [".whl"], timeout_s 540), from the
# repo root, after tests/gpu/make_wheels.sh ran here. Installs flshell from the carried wheels
# (not from this checkout), then: the GPU check (hello-pt -n 4 -gpu 0 in worker-process mode,
# sampling the per-GPU load) and the overhead benchmark. Everything it prints also goes to
# $OUT/device_check.log.
set -uo pipefail
OUT=${OUT:-/tmp/flshell-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_check.log") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
repo=$(pwd)
cd /tmp  # run the installed package, not the checkout
nvidia-smi -L
python3 -c "import flshell, grpc, google.protobuf as pb; print('flshell', flshell.__file__, 'grpc', grpc.__version__, 'protobuf', pb.__version__)"
timeout 300 python3 "$repo/tests/gpu/gpu_check.py" --out "$OUT"
check=$?
timeout 200 python3 "$repo/tests/benchmarks/gpu_overhead.py" --sites 4 --rounds 6 --samples 16384
bench=$?
echo "gpu_check exit $check, gpu_overhead exit $bench"
exit $(( check || bench ))
