"""`make demo`: a local web app over tools.segment's prediction path (docs/demo.md).

    python -m tools.demo [--run DIR] [--weights W.caffemodel --deploy DEPLOY.prototxt] [--camvid DIR]
                         [--host 127.0.0.1] [--port 8000] [--samples 10]

A FastAPI app served by uvicorn, with a plain HTML/JS page (segnet_bvlc/demo/static, no build step). Every prediction is
segnet_bvlc.evaluation.segment.predict_image: the net's class scores upsampled bilinearly to the input's size, then the argmax,
which is what the evaluation scores; models with Dropout layers can also be run with Monte Carlo dropout (the
mean of N sampled softmax outputs, and Bayesian SegNet's uncertainty map). The model picker lists every finished
run folder (inference.caffemodel + net/deploy.prototxt) found under --search (default runs/ and results/,
recursively) and the model given by --run or --weights/--deploy, which is checked at start (a bad one ends the
command with a one-line error). The gallery is CamVid's test split (--camvid, else $CAMVID, else data/CamVid): for
those images the page also shows the ground truth and the image's G, C, mIoU and BF.

The server binds 127.0.0.1 (this machine only) unless --host says otherwise; it has no authentication.
"""


from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from segnet_bvlc.core.device import gpu_problem
from segnet_bvlc.core.errors import SegnetError, fail
from segnet_bvlc.demo.images import gallery_folder
from segnet_bvlc.demo.models import SEARCH, named_models, offered_models
from segnet_bvlc.demo.server import port_problem, serve
from segnet_bvlc.demo.state import Demo

TOOL = "demo"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0],
                                epilog="See docs/demo.md.")
    p.add_argument("--run", type=Path, help="a finished run folder to select first (checked at start)")
    p.add_argument("--weights", type=Path, help="a caffemodel to offer as well (e.g. tools.convert_weights')")
    p.add_argument("--deploy", type=Path, help="its deploy prototxt (default: its run folder's, or the .prototxt "
                                               "beside it)")
    p.add_argument("--search", type=Path, nargs="*", default=None,
                   help="folders searched recursively for finished runs (default: runs results)")
    p.add_argument("--camvid", type=Path, help="CamVid folder for the gallery (default: $CAMVID, $CAMVID_DIR, "
                                               "data/CamVid)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--samples", type=int, default=10,
                   help="Monte Carlo dropout samples the page starts with for dropout models (default 10; 0: off)")
    p.add_argument("--max-samples", type=int, default=100, help="largest number of samples a request may ask")
    p.add_argument("--seed", type=int, default=0, help="dropout masks' seed, as tools.segment --seed (default 0)")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest upload in MiB (default 20)")
    p.add_argument("--max-upload-mp", type=float, default=40, help="largest upload in megapixels (default 40)")
    p.add_argument("--gpu", type=int, help="run on this GPU (default: SEGNET_GPU if set, else the CPU)")
    return p


def _check_options(args) -> None:
    if not 0 < args.port < 65536:
        fail(TOOL, f"--port must be in 1..65535, got {args.port}")
    if args.samples < 0 or args.max_samples < 1 or args.samples > args.max_samples:
        fail(TOOL, f"--samples must be in 0..--max-samples ({args.max_samples}), got {args.samples}")
    if args.max_upload_mb <= 0 or args.max_upload_mp <= 0:
        fail(TOOL, "--max-upload-mb and --max-upload-mp must be > 0")
    if args.gpu is not None and gpu_problem(args.gpu):
        fail(TOOL, gpu_problem(args.gpu))
    if args.deploy is not None and args.weights is None:
        fail(TOOL, "DEPLOY= (--deploy) goes with WEIGHTS= (--weights)")


def _demo(args, warn) -> Demo:
    """The Demo over the named and found models, the named ones loaded once (bad weights end the command)."""
    named = named_models(args.run, args.weights, args.deploy)
    camvid_dir = gallery_folder(args.camvid, warn)
    search = args.search if args.search is not None else [Path(s) for s in SEARCH]
    models = offered_models(named, search, warn)
    demo = Demo(models, named[0].id if named else None, camvid_dir, samples=args.samples,
                max_samples=args.max_samples, seed=args.seed, max_upload_bytes=int(args.max_upload_mb * 2**20),
                max_upload_pixels=int(args.max_upload_mp * 1e6), gpu=args.gpu)
    for m in named:
        demo.check_model(m)
    return demo


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warn = lambda m: print(f"{TOOL}: warning: {m}", file=sys.stderr)  # noqa: E731
    _check_options(args)
    try:
        demo = _demo(args, warn)
    except (SegnetError, OSError) as e:  # SegnetError: SegmentError, CamVidError and the demo's own
        fail(TOOL, str(e))
    problem = port_problem(args.host, args.port)
    if problem:
        fail(TOOL, problem)
    if args.host not in LOCAL_HOSTS:
        warn(f"listening on {args.host}: anyone who can reach this machine can use the demo (no authentication)")
    print(f"{TOOL}: {len(demo.models)} model(s), {len(demo.gallery)} gallery images; http://{args.host}:{args.port}/ "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    serve(demo, args.host, args.port)
    print(f"{TOOL}: stopped after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
