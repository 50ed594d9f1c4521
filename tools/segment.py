"""`python -m tools.segment`: see segnet_bvlc.evaluation.segment."""

import sys

from segnet_bvlc.evaluation.segment import main

if __name__ == "__main__":
    sys.exit(main())
