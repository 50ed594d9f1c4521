"""The demo's state: the models and images it offers, the nets it has loaded and the results it has computed,
shared by the server's worker threads."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segnet_bvlc.core.device import set_caffe_mode
from segnet_bvlc.dataset import camvid
from segnet_bvlc.demo.errors import DemoError
from segnet_bvlc.demo.images import Source, decode_upload, png_bytes
from segnet_bvlc.demo.models import Model
from segnet_bvlc.evaluation import evaluate, segment


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
        with self.lock:
            set_caffe_mode(self.gpu)
            self.nets.put((model.id, False), segment.load_net(model.deploy, model.weights))

    def upload(self, data: bytes, content_type: str, name: str) -> Source:
        bgr = decode_upload(data, content_type, self.max_upload_pixels)
        sid = "upload:" + hashlib.sha256(data).hexdigest()[:16]
        return self.uploads.put(sid, Source(sid, name or "upload", bgr=bgr))

    def predict(self, image_id: str, model_id: str, samples: int, seed: int | None = None) -> Result:
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
            gt = evaluate.read_label_png(source.gt_path)
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
    """The evaluation's metrics of one image (segnet_bvlc.evaluation.evaluate, void ignored): G, C, mIoU (all classes, absent
    ones 0, as compute_test_results.m; and over the present ones), BF (paper rule)."""
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
