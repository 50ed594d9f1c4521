"""`python -m tools.study`: see segnet_bvlc.study."""

import sys

from segnet_bvlc.study import main

if __name__ == "__main__":
    sys.exit(main())
