"""`python -m tools.demo`: see segnet_bvlc.demo.app."""

import sys

from segnet_bvlc.demo.app import main

if __name__ == "__main__":
    sys.exit(main())
