#!/usr/bin/env bash
# Second round of the quick-profile sweep: smaller concept weights, shifted
# training concept images. Waits for the first round (scripts/sweep_quick.sh).
cd "$(dirname "$0")/.."
while [[ ! -e logs/sweep.done ]]; do sleep 20; done
S=".venv/bin/python scripts/concept_sweep.py run"
run2() { $S "$1" --threads 1 > "logs/sweep-$1.log" 2>&1 & $S "$2" --threads 1 > "logs/sweep-$2.log" 2>&1; wait; }
run2 composite_mu_w10 composite_z_w10
run2 composite_mu_w1 composite_mu_w10_shift2
echo done > logs/sweep2.done
