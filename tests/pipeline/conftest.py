"""The models of custom_models.py are named as package.module:callable by these tests: keep their folder importable."""

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
