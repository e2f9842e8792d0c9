#!/usr/bin/env bash
# The paper profile on a CUDA GPU, as the device tool runs it: one prepared script.
# Writes results/paper-gpu/ (metrics.json, figures, reproduce.log, checkpoints/).
# Automatic device choice (--device auto picks the GPU), train.precision=auto (bf16
# where torch.cuda.is_bf16_supported()), the importance-sampled NLL on all 10,000
# test digits. Writes results/paper-gpu/ (metrics, figures, reproduce.log with its
# wall time, the models of seed 0) and prints the timings.
#
#   bash scripts/paper_gpu.sh [OUT]        (OUT defaults to results/paper-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/paper-gpu}
py=${PYTHON:-.venv/bin/python}
"$py" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA GPU: this script is for the device machine"
print("gpu:", torch.cuda.get_device_name(0), "| bf16:", torch.cuda.is_bf16_supported())
PY
mkdir -p "$out"
start=$(date +%s)
"$py" -m conceptlib reproduce --profile paper --out "$out" --cache "${CACHE:-runs-gpu}" \
  --set eval.nll_digits=10000 2> >(tr '\r' '\n' | grep -v 'it/s' > "$out/reproduce.log")
echo "wall seconds: $(( $(date +%s) - start ))" | tee -a "$out/reproduce.log"
mkdir -p "$out/checkpoints"
"$py" - "$out" "${CACHE:-runs-gpu}" <<'PY'
import json, shutil, sys
out, cache = sys.argv[1:]
m = json.load(open(f"{out}/metrics.json"))
for variant, run in m["per_seed"][0]["runs"].items():
    shutil.copyfile(f"{cache}/{run}/model.pt", f"{out}/checkpoints/{variant}.pt")
t = m["timings"]
print("train seconds:", t["seeds"][0]["train_seconds"], "| total:", round(t["total_seconds"]))
PY
