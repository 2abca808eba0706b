#!/usr/bin/env bash
# The CPU benchmark of issue 8: the Fashion-MNIST pairs (shipped ResNet-20 teacher → cnn width 8 and → LeNet-5),
# one whole epoch of the 54,000-image training split per mode at batch 256, every mode, on the CPU.
# Writes benchmarks/cpu.json and prints its markdown (for benchmarks/RESULTS.md). Run it on a quiet machine:
# other processes on the same cores change the figures. Extra arguments go to `kdlab bench` (e.g. --epochs 2).
set -euo pipefail
cd "$(dirname "$0")/.."
kdlab bench fmnist-resnet20-cnn8 fmnist-resnet20-lenet5 --device cpu --out benchmarks/cpu.json "$@"
python benchmarks/render.py benchmarks/cpu.json
