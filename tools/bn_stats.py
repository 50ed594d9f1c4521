"""`python -m tools.bn_stats`: see segnet_bvlc.bn_stats."""

import sys

from segnet_bvlc.bn_stats import main

if __name__ == "__main__":
    sys.exit(main())
