#!/usr/bin/env bash
# GPU check: does every stage really run on a CUDA GPU, how fast, and does it agree with the CPU?
#
# On a machine with a CUDA GPU and a checkout of vaedx (run from anywhere; it works in the repository):
#   VAEDX_DATA_DIR=/path/to/data bash benchmarks/gpu_check.sh [--images 2000] [--epochs 5] [--keep]
# 1. setup: `bash scripts/setup.sh` only when .venv is missing (an existing .venv, and its torch, is never
#    touched); 2. nvidia-smi and torch.cuda facts; 3. `pytest -m cuda`; 4. a short pipeline on a
#    PneumoniaMNIST subset from $VAEDX_DATA_DIR: data prepare, then train, detect (residual + restoration),
#    diagnose finetune and one served request, each on the GPU and on the CPU, with throughput per stage and
#    the CPU/GPU agreement of the figures. Detect, finetune and serve use the GPU-trained model on both
#    devices, so their figures are comparable; each training run is its own model (only its loss is shown).
# Fails (exit 1, one "FAIL:" line naming the stage) on a stage error or timeout, a missing GPU, or scores
# that disagree: detect AUROC apart by more than $AUROC_TOL (0.03), served score by more than 5 %.
# Not yet timed on a GPU: an estimated 3-4 minutes on one modern GPU with 16 CPU cores, most of it the CPU
# legs; every stage has its own timeout (2 to 5 minutes each).
#
# --cpu-only: a dry run for machines without a GPU (the test suite runs it): the same stages with tiny
# sizes, both legs on the CPU with one thread, no nvidia-smi and no pytest; the legs must then agree exactly.
set -euo pipefail

CPU_ONLY=0
IMAGES=2000
EPOCHS=5
KEEP=0
AUROC_TOL=${AUROC_TOL:-0.03}
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-only) CPU_ONLY=1 ;;
    --images) IMAGES=$2; shift ;;
    --epochs) EPOCHS=$2; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "FAIL: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
VAEDX="$ROOT/.venv/bin/vaedx"
DATA=${VAEDX_DATA_DIR:-$ROOT/../shared/data}
export VAEDX_DATA_DIR=$DATA  # for pytest -m cuda
NPZ="$DATA/pneumoniamnist/pneumoniamnist.npz"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vaedx-gpu-check.XXXXXX")
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

if [ "$CPU_ONLY" = 1 ]; then
  DEV=cpu; IMAGES=120; EPOCHS=1; STEPS=3; FT_EPOCHS=1; FT_STEPS=4; THREADS=(--threads 1); BATCH=32; REQUESTS=3
  export OMP_NUM_THREADS=1
else
  DEV=cuda; STEPS=20; FT_EPOCHS=3; FT_STEPS=100; THREADS=(); BATCH=64; REQUESTS=20
fi
N_VAL=$((IMAGES / 4))
N_TEST=$((IMAGES / 3 < 624 ? IMAGES / 3 : 624))

# run_stage NAME SECONDS COMMAND...: output to $WORK/logs/NAME.log; a failure or timeout is one FAIL line
# with the log's tail; the stage's seconds go to $WORK/seconds/NAME
run_stage() {
  local name=$1 limit=$2 rc=0 start
  shift 2
  mkdir -p "$WORK/logs" "$WORK/seconds"
  start=$EPOCHREALTIME
  timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    tail -n 15 "$WORK/logs/$name.log" >&2 || true
    if [ "$rc" = 124 ]; then fail "stage $name timed out after ${limit}s"; fi
    fail "stage $name exited with $rc (log above)"
  fi
  "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$start" "$EPOCHREALTIME" \
    >"$WORK/seconds/$name"
  echo "ok  $name ($(cat "$WORK/seconds/$name") s)"
}

echo "== setup"
if [ ! -x "$PY" ]; then
  echo "no .venv: running scripts/setup.sh"
  run_stage setup 900 bash scripts/setup.sh
else
  echo ".venv present: left as it is ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
fi
[ -f "$NPZ" ] || fail "PneumoniaMNIST not found at $NPZ (set VAEDX_DATA_DIR)"

echo "== machine"
if [ "$CPU_ONLY" = 1 ]; then
  echo "--cpu-only: no GPU used, nvidia-smi not run"
elif command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi || fail "nvidia-smi failed: is the NVIDIA driver loaded?"
else
  echo "nvidia-smi: not on PATH"
fi
"$PY" - "$CPU_ONLY" <<'EOF' || fail "torch sees no CUDA GPU (torch.cuda.is_available() is False); use --cpu-only"
import sys

import torch

print(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
print(f"CPU threads {torch.get_num_threads()}; cuda available: {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}, "
          f"{p.multi_processor_count} SMs, bfloat16: {torch.cuda.is_bf16_supported()}")
if sys.argv[1] != "1" and not torch.cuda.is_available():
    sys.exit(1)
EOF

echo "== pytest -m cuda"
if [ "$CPU_ONLY" = 1 ]; then
  echo "skipped (--cpu-only)"
else
  run_stage pytest_cuda 300 "$PY" -m pytest -q -m cuda -p no:cacheprovider
  tail -n 3 "$WORK/logs/pytest_cuda.log"
  grep -qE "[0-9]+ passed" "$WORK/logs/pytest_cuda.log" || fail "pytest -m cuda ran no test"
  if grep -qE "[0-9]+ skipped" "$WORK/logs/pytest_cuda.log"; then fail "pytest -m cuda skipped tests on a GPU"; fi
fi

echo "== data: PneumoniaMNIST subset (train $IMAGES, val $N_VAL, test $N_TEST)"
"$PY" - "$NPZ" "$WORK/pneumoniamnist.npz" "$IMAGES" "$N_VAL" "$N_TEST" <<'EOF'
import sys

import numpy as np

src, out = np.load(sys.argv[1]), sys.argv[2]
n = dict(zip(("train", "val", "test"), map(int, sys.argv[3:6]), strict=True))
arrays = {f"{s}_{k}": src[f"{s}_{k}"][: n[s]] for s in n for k in ("images", "labels")}
np.savez(out, **arrays)  # the file name gives the label names (normal, pneumonia)
EOF
run_stage prepare 120 "$VAEDX" data prepare "$WORK/pneumoniamnist.npz" --out "$WORK/store" --quiet
STORE="$WORK/store"

# legs: the device under test, then the CPU (in --cpu-only both are the CPU)
LEGS=("$DEV" cpu)
NAMES=(dev cpu)
ARCH=(--widths 32,64 --latent-dim 16 --batch-size "$BATCH" --seed 0)

echo "== train ($EPOCHS epochs on the normal training images)"
for i in 0 1; do
  run_stage "train_${NAMES[i]}" 300 "$VAEDX" train --store "$STORE" --out "$WORK/run_${NAMES[i]}" \
    --epochs "$EPOCHS" --label-filter normal --device "${LEGS[i]}" "${ARCH[@]}" "${THREADS[@]}" --quiet
done
REF="$WORK/run_dev"  # the model every later stage uses on both devices

echo "== detect (residual, restoration with $STEPS steps) on the test split"
for i in 0 1; do
  run_stage "detect_${NAMES[i]}" 300 "$VAEDX" detect --model "$REF" --store "$STORE" \
    --out "$WORK/detect_${NAMES[i]}" --scorer residual,restoration --option "restoration.steps=$STEPS" \
    --max-overlays 0 --device "${LEGS[i]}" "${THREADS[@]}" --quiet
done

echo "== diagnose finetune ($FT_EPOCHS epochs, at least $FT_STEPS steps)"
for i in 0 1; do
  run_stage "finetune_${NAMES[i]}" 300 "$VAEDX" diagnose finetune --model "$REF" --store "$STORE" \
    --out "$WORK/finetune_${NAMES[i]}" --epochs "$FT_EPOCHS" --min-steps "$FT_STEPS" \
    --device "${LEGS[i]}" "${THREADS[@]}" --quiet
done

echo "== serve: one warm-up request, then $REQUESTS timed ones"
"$PY" -c "
import sys; import numpy as np; from PIL import Image
Image.fromarray(np.load(sys.argv[1])['test_images'][0]).save(sys.argv[2])" "$NPZ" "$WORK/xray.png"
for i in 0 1; do
  port=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  "$VAEDX" serve --model "$REF" --host 127.0.0.1 --port "$port" --device "${LEGS[i]}" "${THREADS[@]}" \
    >"$WORK/serve_${NAMES[i]}.log" 2>&1 &
  SERVER_PID=$!
  run_stage "serve_${NAMES[i]}" 120 "$PY" - "$port" "$WORK/xray.png" "$WORK/serve_${NAMES[i]}.json" "$REQUESTS" <<'EOF'
import json
import sys
import time

import httpx

port, png, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = f"http://127.0.0.1:{port}"
for _ in range(600):  # the model loads at start-up
    try:
        if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.1)
else:
    sys.exit("server did not answer /healthz within 60 s")
data = open(png, "rb").read()


def one() -> dict:
    r = httpx.post(f"{base}/v1/predict", files={"file": ("x.png", data, "image/png")}, timeout=60)
    if r.status_code != 200:
        sys.exit(f"POST /v1/predict answered {r.status_code}: {r.text[:300]}")
    return r.json()


first = one()
start = time.perf_counter()
for _ in range(n):
    one()
ms = (time.perf_counter() - start) / n * 1000
json.dump({"score": first["score"], "scorer": first["scorer"], "ms": ms}, open(out, "w"))
EOF
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
done

echo "== figures"
"$PY" - "$WORK" "$STORE" "$DEV" "$AUROC_TOL" "$CPU_ONLY" "$EPOCHS" <<'EOF'
import csv
import json
import sys
from pathlib import Path

import numpy as np

from vaedx.anomaly.output import DetectOutput
from vaedx.data.store import TensorStore
from vaedx.metrics.measures import auroc

work, store, dev, tol, cpu_only, epochs = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), \
    sys.argv[5] == "1", int(sys.argv[6])
st = TensorStore.open(store)
n_normal = int((st.labels[st.select(split="train")] == st.label_names.index("normal")).sum())
n_test = len(st.select(split="test"))
secs = {p.name: float(p.read_text()) for p in (work / "seconds").iterdir()}
legs = {"dev": dev, "cpu": "cpu"}
problems = []


def val_loss(run: Path) -> str:
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    vals = [float(r["val_loss"]) for r in rows if r.get("val_loss") not in (None, "")]
    return f"{min(vals):.2f}" if vals else "n/a"


print(f"{'stage':<10} {'device':<7} {'seconds':>8}  throughput")
for leg, device in legs.items():
    print(f"{'train':<10} {device:<7} {secs[f'train_{leg}']:>8.2f}  "
          f"{n_normal * epochs / secs[f'train_{leg}']:.0f} images/s (incl. start-up), best val loss "
          f"{val_loss(work / f'run_{leg}')}")
for leg, device in legs.items():
    print(f"{'detect':<10} {device:<7} {secs[f'detect_{leg}']:>8.2f}  "
          f"{n_test / secs[f'detect_{leg}']:.1f} test images/s (residual + restoration, incl. calibration)")
for leg, device in legs.items():
    ft = json.loads((work / f"finetune_{leg}" / "finetune.json").read_text())
    print(f"{'finetune':<10} {device:<7} {secs[f'finetune_{leg}']:>8.2f}  {ft['epochs']} epochs, final val "
          f"AUC {ft['final_val_auc']}")
served = {leg: json.loads((work / f"serve_{leg}.json").read_text()) for leg in legs}
for leg, device in legs.items():
    print(f"{'serve':<10} {device:<7} {secs[f'serve_{leg}']:>8.2f}  {served[leg]['ms']:.1f} ms per request "
          f"(after one warm-up), {served[leg]['scorer']} score {served[leg]['score']:.6g}")

print(f"\nagreement, {dev} against cpu (the same model, trained on {dev})"
      + (" - dry run: both legs on the CPU, so they must agree exactly" if cpu_only else ""))
a, b = DetectOutput.open(work / "detect_dev"), DetectOutput.open(work / "detect_cpu")
if not np.array_equal(a.index, b.index):
    problems.append("detect scored different rows on the two devices")
truth = np.array([r["label"] == "pneumonia" for r in b.rows], dtype=np.int8)
for name in ("residual", "restoration"):
    s_dev, s_cpu = a.scores(name), b.scores(name)
    gap = float(np.max(np.abs(s_dev - s_cpu)))
    spread = max(float(np.ptp(s_cpu)), 1e-12)
    au_dev, au_cpu = auroc(truth, s_dev), auroc(truth, s_cpu)
    print(f"detect {name:<12} max |diff| {gap:.3g} ({gap / spread:.2%} of the score range); "
          f"AUROC {dev} {au_dev:.4f}, cpu {au_cpu:.4f}")
    if not abs(au_dev - au_cpu) <= tol:
        problems.append(f"detect {name}: AUROC {au_dev:.4f} on {dev} vs {au_cpu:.4f} on cpu (tolerance {tol})")
    if cpu_only and gap != 0:
        problems.append(f"detect {name}: two CPU runs differ by {gap:.3g}")
s_dev, s_cpu = served["dev"]["score"], served["cpu"]["score"]
rel = abs(s_dev - s_cpu) / max(abs(s_cpu), 1e-12)
print(f"serve  {served['cpu']['scorer']:<12} score {dev} {s_dev:.6g}, cpu {s_cpu:.6g} ({rel:.2%} apart)")
if rel > 0.05:
    problems.append(f"serve: score {s_dev:.6g} on {dev} vs {s_cpu:.6g} on cpu")
print("finetune: each device trains its own encoder, so only the val AUCs above are compared")
for p in problems:
    print(f"FAIL: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
echo "gpu_check: all stages passed (device ${DEV})"
