#!/bin/bash
# Rebuild this study. Digits: every built-in shell on the digits zoo model (adversarially trained
# MLP) at ε = δ = 0.1 with the default battery, seed 0, on the first 200 test points (50 for the
# two Defense-GAN shells: their projection, 100 latent steps from 8 starts per query, makes a run
# about ten times slower per point). MNIST: the shells that fit this machine's time at the paper's
# scale (ε = δ = 0.3, 150 held-out points, 50 for DiffPure, no doubled-budget rerun, as the MCN example
# reports/examples/mnist-paper-scale, which is the MNIST table's MCN row). Then `compare` writes
# compare.md, compare.html and compare.png from the runs' results.json, with literature.toml's
# columns. Runs whose results.json exists are not redone. Run from the repository root:
#   bash reports/examples/defenses/make.sh
# The per-point stores (results.sqlite, about 1 MB a run) stay out of git (.gitignore here).
set -euo pipefail
study=reports/examples/defenses
shells=(mcn ncn vote jpeg bit-depth magnet tvm resize-pad diffpure defense-gan-delta defense-gan)
for shell in "${shells[@]}"; do
  points=200
  case $shell in defense-gan*) points=50;; esac
  if [ ! -f "$study/digits/$shell/results.json" ]; then
    robustness-eval run --shell "$shell" --n-points "$points" --out "$study/digits/$shell" --quiet
  fi
done
robustness-eval compare "${shells[@]/#/$study/digits/}" --annotations "$study/literature.toml" --out "$study"

mnist=(vote jpeg bit-depth magnet tvm resize-pad diffpure)
for shell in "${mnist[@]}"; do
  points=150
  case $shell in diffpure) points=50;; esac  # 10 reverse steps of a 784-wide denoiser per draw, 8 draws per gradient
  if [ ! -f "$study/mnist/$shell/results.json" ]; then
    robustness-eval run --data mnist --eps 0.3 --delta 0.3 --n-points "$points" --no-convergence --shell "$shell" \
      --out "$study/mnist/$shell" --quiet
  fi
done
if [ ! -f reports/examples/mnist-paper-scale/results.json ]; then
  robustness-eval run --data mnist --eps 0.3 --delta 0.3 --n-points 150 --no-convergence \
    --out reports/examples/mnist-paper-scale --quiet
fi
robustness-eval compare reports/examples/mnist-paper-scale "${mnist[@]/#/$study/mnist/}" \
  --labels "mcn,$(IFS=,; echo "${mnist[*]}")" --annotations "$study/literature.toml" --out "$study/mnist"
