"""python -m tools.architecture_table [--out prototxt/README_table.md]: the README's architecture table, measured.

Counts every architecture's parameters and its deploy caffemodel's size (segnet_bvlc.nets.architecture_table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.core.log import console_logging
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.nets.architecture_table import OUT, markdown, measure


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.architecture_table", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / OUT)
    args = p.parse_args(argv)
    console_logging()
    write_text_atomic(args.out, markdown(measure()))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
