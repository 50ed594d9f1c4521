"""`python -m tools.train`: see segnet_bvlc.training.train."""

import sys

from segnet_bvlc.training.train import main

if __name__ == "__main__":
    sys.exit(main())
