#!/usr/bin/env bash
# The recorded 3-seed quick run: waits for the sweep's trainings (which fill the run
# cache), then measures every variant over seeds 0-2 and keeps seed 0's models.
cd "$(dirname "$0")/.."
while [[ ! -e logs/default.done || ! -e logs/seeds.done ]]; do sleep 20; done
/usr/bin/time -v .venv/bin/conceptlib reproduce --profile quick --out results/quick \
  --cache runs --seeds 3 > logs/record_quick.log 2>&1
mkdir -p results/quick/checkpoints
python3 - <<'PY'
import json, shutil
m = json.load(open("results/quick/metrics.json"))
for variant, run in m["per_seed"][0]["runs"].items():
    shutil.copyfile(f"runs/{run}/model.pt", f"results/quick/checkpoints/{variant}.pt")
PY
echo done > logs/record.done
