"""What each architecture costs: params and storage multiplier from the generated nets, inference and training
step times from the benchmark, and the paper preset's training time estimated from them and from the paper's
own GPU timings."""

from __future__ import annotations

import json
from pathlib import Path

from prototxt import count_params
from prototxt.protocol import settings
from segnet_bvlc.benchmark import measure as benchmark
from segnet_bvlc.core import paper
from segnet_bvlc.dataset.camvid import SPLIT_SIZES
from segnet_bvlc.nets.load import net_from_param


def _benchmark_json(results: Path) -> dict | None:
    bench = results / "benchmark" / "benchmark.json"
    return json.loads(bench.read_text()) if bench.is_file() else None


def architecture_columns(arch: str, results: Path) -> dict:
    """Params and storage multiplier from the generated net; from the benchmark's JSON if any
    (RESULTS/benchmark/benchmark.json): inference ms, the training step's forward + backward ms at batch 1 and
    the paper preset's training time estimated from them (`paper_preset_hours`)."""
    import caffe  # heavy: only the report needs a net built

    deploy = benchmark.net_param(arch, "deploy", 1, 64, 96)
    net = net_from_param(benchmark.net_param(arch, "train", 1, 64, 96), phase=caffe.TRAIN)
    channels = {name: blob.data.shape[1] for name, blob in net.blobs.items() if blob.data.ndim == 4}
    del net
    row = {"params_m": round(count_params(deploy) / 1e6, 3), "storage": benchmark.storage_multiplier(deploy, channels),
           "infer_ms": None, "step_ms": None, "paper_preset_hours": None}
    bench = _benchmark_json(results)
    for r in bench.get("rows", []) if bench else []:
        if r.get("arch") == arch and r.get("infer_ms") is not None:
            row["infer_ms"] = round(r["infer_ms"], 1)
        if r.get("arch") == arch and r.get("forward_ms") is not None and r.get("backward_ms") is not None:
            row["step_ms"] = round(r["forward_ms"] + r["backward_ms"], 1)
            row["paper_preset_hours"] = round(paper_preset_hours(arch, row["step_ms"], r["infer_ms"]), 2)
    return row


def benchmark_device(results: Path) -> str | None:
    """What RESULTS/benchmark/benchmark.json was measured on, in words (None without one)."""
    bench = _benchmark_json(results)
    if bench is None:
        return None
    m = bench.get("machine", {})
    where = m.get("gpu") if m.get("mode") == "GPU" else f"{m.get('cpu')}, {m.get('cpus_usable')} CPUs"
    return (f"{where} ({m.get('mode')} mode, {m.get('caffe_prefix')}), {m.get('date')}, "
            f"load {m.get('load_average_start')}")


def paper_preset_hours(arch: str, step_ms: float, infer_ms: float) -> float:
    """Hours one run of the paper preset takes where a training step of one image (forward + backward at
    360x480, batch 1) takes `step_ms` and a validation image's forward `infer_ms`: max_iter steps of `batch`
    images, plus a forward pass over CamVid's validation split every val_every iterations. BVLC Caffe's
    convolutions loop over the images of a batch, so a step of B images is taken as B one-image steps: an
    estimate from measured batch-1 times, not a measurement at batch 12. BatchNorm statistics and scoring come on
    top (minutes)."""
    s = settings(arch, "paper")
    seconds = (s["max_iter"] * s["batch"] * step_ms
               + (s["max_iter"] // s["val_every"]) * SPLIT_SIZES["val"] * infer_ms) / 1000
    return seconds / 3600


def paper_gpu_step_ms(arch: str) -> float:
    """A training step of one image on the paper's GPU, from its own measurements: Table 1's inference time of
    `arch` times (forward + backward) / forward of SegNet in Table 6 (the only encoder-decoder of this family
    timed there, 2.16)."""
    segnet = paper.table6()["segnet"]
    return paper.table1()[arch]["infer_ms"] * (segnet["forward_ms"] + segnet["backward_ms"]) / segnet["forward_ms"]


def paper_preset_estimate(study: str, archs: list[str], columns: dict, results: Path) -> dict:
    """The paper preset's training time per run: from this benchmark's step times (`columns`) and, for Table 1,
    from the paper's own GPU timings."""
    def paper_gpu(arch: str) -> dict:
        if study != "table1":
            return {"paper_gpu_step_ms": None, "paper_gpu_hours": None}
        return {"paper_gpu_step_ms": round(paper_gpu_step_ms(arch), 1),
                "paper_gpu_hours": round(paper_preset_hours(arch, paper_gpu_step_ms(arch),
                                                            paper.table1()[arch]["infer_ms"]), 2)}

    return {"device": benchmark_device(results),
            "paper_preset": {k: settings(archs[0], "paper")[k] for k in ("batch", "max_iter", "val_every")},
            "archs": {a: {"step_ms": columns[a]["step_ms"], "hours": columns[a]["paper_preset_hours"],
                          **paper_gpu(a)} for a in archs}}
