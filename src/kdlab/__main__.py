"""``python -m kdlab`` — the ``kdlab`` command; also how torchrun starts it: ``torchrun ... -m kdlab distill ...``."""

import sys

from kdlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
