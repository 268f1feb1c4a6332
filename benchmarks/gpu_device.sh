#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (issue 13): the CUDA tests, then benchmarks/gpu_speed.py.
# That machine has torch + torchvision and no network. Prepare here, in the repository root, once:
#
#   mkdir -p .git/info && printf '/.whl/\n/.peer/\n' >> .git/info/exclude
#   P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
#   python3 -m pip download $P -d .whl ultralytics ultralytics-thop ultralytics-platform faster-coco-eval \
#      fastapi starlette pydantic pydantic-core annotated-types typing-inspection python-multipart opentelemetry-api
#   mkdir -p .peer/yolo && cp -r ../shared/peers/rtdetr_official .peer/
#   for s in s m l; do unzip -p .whl/ultralytics-*.whl ultralytics/cfg/models/v8/yolov8.yaml > .peer/yolo/yolov8$s.yaml; done
#
# (polars, an ultralytics requirement, is imported only for its data-frame exports: left behind, it would
# not fit the 64 MiB that travel.) Then call the device tool's run with carry [".whl", ".peer"],
# timeout_s 590 and the command:  bash benchmarks/gpu_device.sh
# Results come back in $OUT: gpu.txt, cuda_tests.log, cli_benchmark.json/.log, gpu_speed.json/.log.
# Time: tests <= 150 s, CLI benchmark <= 45 s, gpu_speed.py stops starting pieces after 330 s.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH="$PWD/src:/tmp/site" || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" >>"$OUT/gpu.txt" 2>&1
timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda tests/engine/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.log"
timeout 45 python3 -c "from rtdetr.cli import main; raise SystemExit(main())" benchmark rtdetrv2_r18vd --device cuda \
  --cuda-graph --batch 1 32 --runs 30 -o "$OUT/cli_benchmark.json" 2>&1 | tee "$OUT/cli_benchmark.log"
export YOLO_OFFLINE=1
timeout 360 python3 benchmarks/gpu_speed.py --official .peer/rtdetr_official --yolo-dir .peer/yolo --deadline 330 \
  --yolo-shift 0 4 6 --out "$OUT/gpu_speed.json" 2>&1 | tee "$OUT/gpu_speed.log"
