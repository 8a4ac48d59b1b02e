"""``python -m cancelq.simulator ...``: same as ``cancelq simulator ...``."""

import sys

from cancelq.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
