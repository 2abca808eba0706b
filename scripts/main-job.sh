#!/usr/bin/env bash
# The README's first command: set up a fresh machine (scripts/setup.sh) and run the main job — the shipped
# Fashion-MNIST ResNet-20 teacher distilled into a 6k-parameter CNN beside an independent student. Arguments go to
# `kdlab distill` (e.g. epochs=3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/kdlab distill "$@"
