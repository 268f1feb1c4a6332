#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (issue 13): CUDA tests, CPU-vs-CUDA parity, speed.
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
# and the command below.
# At most 7 files come back (the tool returns 8). Parts (PARTS, default "tests parity demo bench speed"), in that order:
#   tests   the cuda-marked tests but the slow ones (<= 100 s)                           -> cuda_tests.log
#   parity  benchmarks/cuda_parity.py: CPU vs CUDA outputs, gradients, Trainer steps (<= 120 s) -> cuda_parity.json/.log
#   demo    the embedded demo, 10 epochs on CUDA, seeds 0 1 2 side by side (<= 220 s)  -> demo.log
#   bench   rtdetr benchmark --device cuda --cuda-graph (pre-processing split; <= 45 s) -> cli_benchmark.json
#   speed   benchmarks/gpu_speed.py, stops starting pieces after 330 s    -> gpu_speed.json/.log
# e.g. the device tool's run with command "PARTS='tests bench speed' bash benchmarks/gpu_device.sh", timeout_s 560
# (tests <= 100 s + bench <= 45 s + speed <= 360 s; 'parity demo' <= 340 s is the training-parity pair).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
PARTS=${PARTS:-tests parity demo bench speed}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH="$PWD/src:/tmp/site" || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" 2>&1
has() { [[ " $PARTS " == *" $1 "* ]]; }
if has tests; then
  timeout 100 python3 -m pytest -q -rf --tb=short -p no:cacheprovider -m "cuda and not slow" tests/engine/test_cuda.py >"$OUT/cuda_tests.log" 2>&1
  grep -E "^E  |passed|failed|^FAILED|Error" "$OUT/cuda_tests.log" | tail -30
fi
if has parity; then
  timeout 120 python3 benchmarks/cuda_parity.py --size 160 --loop-steps 20 --out "$OUT/cuda_parity.json" \
    >"$OUT/cuda_parity.log" 2>&1
  python3 -c "import json, sys; [print(json.dumps(r)[:1500]) for r in json.load(open(sys.argv[1]))]" "$OUT/cuda_parity.json"
fi
if has demo; then
  # the embedded demo's whole 10-epoch schedule on CUDA, seeds 0-2 side by side (the model is far too small to
  # fill the GPU: three runs take about the time of one); compare with the CPU's AP for the same seeds.
  for seed in 0 1 2; do
    OMP_NUM_THREADS=4 timeout 220 python3 -m rtdetr.demo --out "/tmp/demo_s$seed" --epochs 10 train.device=cuda \
      train.progress=false "train.seed=$seed" >"/tmp/demo_s$seed.log" 2>&1 &
  done
  wait
  for seed in 0 1 2; do
    echo "== demo 10 epochs on CUDA, seed $seed" | tee -a "$OUT/demo.log"
    cat "/tmp/demo_s$seed.log" >>"$OUT/demo.log"
    grep -E "epoch [0-9]+:|best COCO|Error" "/tmp/demo_s$seed.log" | sed -E 's/lr=[^ ]+ //; s/skipped_steps=0, //'
  done
fi
if has bench; then
  timeout 45 python3 -c "from rtdetr.cli import main; raise SystemExit(main())" benchmark rtdetrv2_r18vd \
    --device cuda --cuda-graph --batch 1 32 --runs 30 -o "$OUT/cli_benchmark.json" >/tmp/cli_benchmark.log 2>&1
  tail -4 /tmp/cli_benchmark.log
fi
if has speed; then
  export YOLO_OFFLINE=1
  timeout 360 python3 benchmarks/gpu_speed.py --official .peer/rtdetr_official --yolo-dir .peer/yolo --deadline 330 \
    --yolo-shift 0 4 6 --out "$OUT/gpu_speed.json" >"$OUT/gpu_speed.log" 2>&1
  tail -5 "$OUT/gpu_speed.log"
fi
