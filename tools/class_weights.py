"""`python -m tools.class_weights`: see segnet_bvlc.dataset.class_weights."""

import sys

from segnet_bvlc.dataset.class_weights import main

if __name__ == "__main__":
    sys.exit(main())
