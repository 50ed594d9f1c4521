"""`python -m tools.evaluate`: see segnet_bvlc.evaluation.evaluate."""

import sys

from segnet_bvlc.evaluation.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
