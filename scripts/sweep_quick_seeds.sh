#!/usr/bin/env bash
# Seeds 1 and 2 of the reference variants for the 3-seed quick run (the run cache
# then holds them for `conceptlib reproduce --profile quick --seeds 3`).
cd "$(dirname "$0")/.."
S=".venv/bin/python scripts/concept_sweep.py run"
for c in baseline augmented paper; do
  for seed in 1 2; do
    $S "$c" --seed "$seed" --threads 1 > "logs/sweep-$c-seed$seed.log" 2>&1
  done
done
echo done > logs/seeds.done
