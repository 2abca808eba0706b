#!/usr/bin/env bash
# The GPU benchmark of issue 8: every pair on CUDA (Fashion-MNIST pairs: one whole epoch at batch 256; CIFAR pairs:
# 100 steps at batch 512 on random CIFAR-shaped tensors, the epoch and the 240-epoch recipe extrapolated from them),
# bf16 autocast for kdlab, MFU against the H100 SXM dense bf16 peak (pass --peak-tflops X for another GPU);
# then resnet32x4 → resnet8x4 again with the student compiled. Writes benchmarks/gpu.json and
# benchmarks/gpu-compile.json and prints their markdown. Extra arguments go to both `kdlab bench` calls.
set -euo pipefail
cd "$(dirname "$0")/.."
kdlab bench --device cuda --steps 100 --warmup 10 --out benchmarks/gpu.json "$@"
kdlab bench cifar-resnet32x4-resnet8x4 --device cuda --steps 100 --warmup 10 --compile \
    --out benchmarks/gpu-compile.json "$@"
python benchmarks/render.py benchmarks/gpu.json benchmarks/gpu-compile.json
