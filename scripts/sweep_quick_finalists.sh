#!/usr/bin/env bash
# Seeds 1 and 2 of the chosen default of the quick sweep
# (composite_mu_w1, the config's defaults); the runner-up's seeds ran beside it:
#   for s in 1 2; do .venv/bin/python scripts/concept_sweep.py run composite_mu_w10_warm2 --seed $s --threads 1; done
cd "$(dirname "$0")/.."
S=".venv/bin/python scripts/concept_sweep.py run"
$S composite_mu_w1 --seed 1 --threads 1 > logs/sweep-default-seed1.log 2>&1 &
$S composite_mu_w1 --seed 2 --threads 1 > logs/sweep-default-seed2.log 2>&1
wait
echo done > logs/default.done
