"""The architecture table (prototxt/README_table.md), measured on the generated nets.

For every architecture (default options, CamVid 360x480, 11 classes; DeconvNet also with its original 4096-wide
fc layers) it counts the parameters and saves the deploy net's freshly initialised caffemodel to a temporary
folder to measure its size on disk (float32 weights plus BatchNorm's statistics blobs).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prototxt import Options, build_net, count_params
from prototxt.registry import ARCH_LIST
from segnet_bvlc.core.device import set_caffe_mode
from segnet_bvlc.core.log import logger
from segnet_bvlc.nets.load import net_from_param

log = logger("architecture_table")
OUT = Path("prototxt") / "README_table.md"


def measure() -> list[dict]:
    """One row per architecture (and DeconvNet at its original fc width): parameters, the paper's count, and the
    deploy caffemodel's size on disk."""
    set_caffe_mode()
    deconvnet = next(a for a in ARCH_LIST if a.name == "deconvnet")
    rows = [(a, Options(split="deploy"), a.paper_params) for a in ARCH_LIST]
    rows.append((deconvnet, Options(split="deploy", fc_dim=4096), 252e6))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, opts, paper in rows:
            net = net_from_param(build_net(arch.name, opts))
            model = Path(tmp, "net.caffemodel")
            net.save(str(model))
            out.append(dict(arch=arch.name + (" --fc-dim 4096" if opts.fc_dim else ""), title=arch.title,
                            params=count_params(net), paper=paper, source=arch.paper_source,
                            size_mb=model.stat().st_size / 1e6))
            del net
            os.unlink(model)
            log.info(f"{out[-1]['arch']}: {out[-1]['params']:,} params, {out[-1]['size_mb']:.1f} MB")
    return out


def markdown(rows: list[dict]) -> str:
    """prototxt/README_table.md: the rows beside the paper's counts, and how they were measured."""
    lines = [
        "| Architecture (`ARCH`) | Parameters (ours) | Paper | Difference | Model size on disk (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        paper = f"{r['paper'] / 1e6:g} M" if r["paper"] else "—"
        diff = f"{100 * (r['params'] / r['paper'] - 1):+.2f} %" if r["paper"] else "—"
        lines.append(f"| {r['title']} (`{r['arch']}`) | {r['params']:,} | {paper} | {diff} | {r['size_mb']:.1f} |")
    lines += [
        "",
        "Measured by `python -m tools.architecture_table` (default options: CamVid 360x480, 11 classes, BatchNorm on). "
        "Parameters: convolution and deconvolution weights and biases plus the Scale layers' (BatchNorm's "
        "learnt scale and shift), not BatchNorm's statistics blobs (`prototxt.count_params`). Model size: "
        "the deploy net's caffemodel as Caffe saves it (float32, statistics blobs included). The paper's "
        "counts: Table 1 (Table 1 variants), docs/paper.md §5 (SegNet 29.4 M from the public prototxt; "
        "FCN-VGG16 134 M; DeepLab-LargeFOV 20.5 M; DeconvNet 252 M with its original 4096-wide fc layers, "
        "none published for the benchmark's 1024). The paper's Table 6 model sizes: SegNet 117 MB, "
        "DeepLab-LargeFOV 83 MB, FCN (learnt deconv) 539 MB, DeconvNet 877 MB (fits neither fc width).",
        "",
        "FCN-Basic-NoDimReduction and -NoAddition-NoDimReduction are 2.2 % above the paper: their four "
        "8x8x64x64 deconvolutions alone are 1.049 M, which the paper's 1.625 M appears to round to 1.0 M.",
    ]
    return "\n".join(lines) + "\n"
