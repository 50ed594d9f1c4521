"""`python -m tools.camvid_pipeline`: see segnet_bvlc.pipeline."""

import sys

from segnet_bvlc.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
