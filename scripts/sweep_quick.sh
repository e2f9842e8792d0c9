#!/usr/bin/env bash
cd /work/main
PY=.venv/bin/python
S="$PY scripts/concept_sweep.py run"
$S baseline --threads 2 > logs/sweep-baseline.log 2>&1
run2() { $S "$1" --threads 1 > "logs/sweep-$1.log" 2>&1 & $S "$2" --threads 1 > "logs/sweep-$2.log" 2>&1; wait; }
run2 composite_mu_w100 composite_z_w100
run2 composite_mudetached_w100 composite_mu_w10_warm2
run2 paper composite_mu_mse_w100
run2 isolated_mu_w100 augmented
echo done > logs/sweep.done
