"""`python -m tools.init_weights`: see segnet_bvlc.training.init_weights."""

import sys

from segnet_bvlc.training.init_weights import main

if __name__ == "__main__":
    sys.exit(main())
