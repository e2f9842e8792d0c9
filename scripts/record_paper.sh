#!/usr/bin/env bash
# Record the paper profile's run in results/paper/ (replacing the earlier one).
# Writes results/paper/ (metrics.json, figures, reproduce.log, checkpoints/,
# operators.json).
#
#   scripts/record_paper.sh            # restore the run cache, run, record
#
# 1. Restores the trained runs kept in results/paper-rerun/ into runs/ (and the
#    classifiers cached there, `*.pt`), so that a run interrupted in an earlier
#    session resumes instead of training again.
# 2. Runs `conceptlib reproduce --profile paper` under /usr/bin/time (its log in
#    logs/paper.log); nothing else should run on the machine meanwhile, and
#    this file must not be edited while it runs (bash reads it as it goes).
# 3. Copies metrics.json, the figures and a log without progress bars to
#    results/paper/, each variant's model.pt to results/paper/checkpoints/, and
#    measures the operators on them (results/paper/operators.json).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs logs
if compgen -G "results/paper-rerun/*-*/" > /dev/null; then
  cp -rn results/paper-rerun/*-*/ runs/
fi
if compgen -G "results/paper-rerun/*.pt" > /dev/null; then  # trained classifiers
  cp -n results/paper-rerun/*.pt runs/
fi
/usr/bin/time -v .venv/bin/python -m conceptlib reproduce --profile paper \
  --out out/paper --cache runs > logs/paper.log 2>&1
rm -rf results/paper.new && mkdir -p results/paper.new/checkpoints
cp out/paper/metrics.json out/paper/*.png results/paper.new/
tr '\r' '\n' < logs/paper.log | grep -av "it/s\|s/it" > results/paper.new/reproduce.log
.venv/bin/python - <<'PY'
import json, shutil
m = json.load(open("results/paper.new/metrics.json"))
for variant, run in m["per_seed"][0]["runs"].items():
    shutil.copyfile(f"runs/{run}/model.pt", f"results/paper.new/checkpoints/{variant}.pt")
PY
rm -rf results/paper && mv results/paper.new results/paper
.venv/bin/python scripts/measure_operators.py results/paper/checkpoints \
  --out results/paper/operators.json --cache runs
echo "recorded results/paper; results/paper-rerun/ can go now"
