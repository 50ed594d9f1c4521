"""The training protocols and presets: each setting of each architecture and preset, written once, here.

Read by the solver generator (prototxt/solver.py), the generators' defaults (registry.resolve: train batch and
class weights), the training run (what its command line leaves out), the pipeline and the study (presets),
the memory benchmark, `make presets` and the README's table (`python -m prototxt --protocols`);
tests/test_protocol.py checks every (architecture, preset) pair against the paper's numbers.

A preset is the architecture's protocol with a few settings replaced:
- `paper`: the protocol itself (docs/paper.md §2).
- `quick`: a quarter of CamVid's resolution and 13 epochs, so that SegNet-Basic finishes in about half an hour
  on a 2-core CPU (docs/runs.md); median-frequency class weights, so that a first model finds every class.
- `smoke`: seconds; checks the path (LMDB, training with validation and a resume point, BatchNorm statistics,
  evaluation), not a model. CI and the study's smoke run use it.
"""

from __future__ import annotations

PROTOCOLS: dict[str, dict] = {
    # Table 1, the decoder variants (docs/paper.md §2.1): SGD, fixed lr 0.1, momentum 0.9, batch 12, median-
    # frequency class weights; "until convergence", validated every 1000 iterations. max_iter 10000 is
    # SegNet-Tutorial's segnet_basic_solver. Weight decay 5e-4: the public solvers (the paper does not say).
    "table1": dict(height=360, width=480, batch=12, base_lr=0.1, momentum=0.9, weight_decay=5e-4, max_iter=10000,
                   class_weights="published", val_every=1000, snapshot_every=1000, log_every=20),
    # Tables 3 and 6, the deep architectures (§2.2): fixed lr 1e-3, momentum 0.9, batch 5, no class balancing,
    # "more than 100 epochs", reported up to 140K iterations (Table 3, SegNet's last checkpoint).
    "benchmark": dict(height=360, width=480, batch=5, base_lr=1e-3, momentum=0.9, weight_decay=5e-4,
                      max_iter=140000, class_weights="none", val_every=1000, snapshot_every=1000, log_every=20),
}

# The protocol each architecture trains under, in the registry's order: the Table 1 decoder variants under
# Table 1's, the deep architectures under the benchmark's (docs/paper.md §2).
ARCH_PROTOCOL: dict[str, str] = {
    "segnet": "benchmark",
    **{arch: "table1" for arch in (
        "segnet-basic", "segnet-basic-single-channel-decoder", "segnet-basic-encoder-addition",
        "bilinear-interpolation", "fcn-basic", "fcn-basic-no-addition", "fcn-basic-no-dim-reduction",
        "fcn-basic-no-addition-no-dim-reduction")},
    **{arch: "benchmark" for arch in ("fcn", "fcn-learnt-deconv", "deconvnet", "deeplab-largefov")},
}

# Settings an architecture keeps against its protocol, with the reason. (SegNet trains without class weights as in
# Table 3, whose SegNet row Table 2 repeats; SegNet-Tutorial's segnet_train.prototxt has the published median-
# frequency weights: CLASS_WEIGHTS=published.)
#
# The FCN-Basic family at lr 0.01, not the paper's 0.1 (a deviation, docs/paper.md §9.4): its decoder is a chain of
# four learnt deconvolutions and 1x1 reductions with no normalisation between them, and at lr 0.1 every variant
# diverges (NaN) within 20 iterations at the quick preset, with or without class weights, at batch 4 and 12; at 0.03
# FCN-Basic-NoAddition-NoDimReduction still diverges at iteration 8; at 0.01 all four train
# (tests/test_train.py::test_fcn_basic_family_trains_at_its_learning_rate). The paper's lr stays one option away:
# `tools.camvid_pipeline train --lr 0.1` (make camvid-train LR=0.1).
FCN_BASIC_LR = 0.01
ARCH_SETTINGS: dict[str, dict] = {
    arch: dict(base_lr=FCN_BASIC_LR)
    for arch in ("fcn-basic", "fcn-basic-no-addition", "fcn-basic-no-dim-reduction",
                 "fcn-basic-no-addition-no-dim-reduction")
}

PRESETS: dict[str, dict] = {
    "paper": {},
    # 1200 iterations of 4 images = 13 epochs at 90x120. Median-frequency weights: without them SegNet-Basic
    # scored 0 IoU on SignSymbol, Pedestrian, Pole and Bicyclist (results/label-alignment/before-nearest, mIoU
    # 32.3); with them every class scores and mIoU is 33.4 (results/table1-quick/segnet-basic-mfb).
    "quick": dict(height=90, width=120, batch=4, max_iter=1200, class_weights="published", val_every=300,
                  snapshot_every=300),
    "smoke": dict(height=45, width=60, batch=2, max_iter=4, class_weights="none", val_every=2, snapshot_every=2,
                  log_every=1),
}
SETTINGS = tuple(PROTOCOLS["table1"])


def protocol_of(arch: str) -> str:
    if arch not in ARCH_PROTOCOL:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCH_PROTOCOL)}")
    return ARCH_PROTOCOL[arch]


def settings(arch: str, preset: str = "paper", protocol: str | None = None) -> dict:
    """Every training setting of `arch` under `preset` (a new dict): its protocol (or `protocol`), the
    architecture's own settings, then the preset's."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' ({', '.join(PRESETS)})")
    protocol = protocol or protocol_of(arch)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}' ({', '.join(PROTOCOLS)})")
    return {**PROTOCOLS[protocol], **ARCH_SETTINGS.get(arch, {}), **PRESETS[preset]}


def markdown() -> str:
    """The README's table: one row per (protocol, preset)."""
    lines = ["| protocol (architectures) | preset | size | solver | batch | iterations | class weights | "
             "validation |", "|---|---|---|---|---:|---:|---|---|"]
    for protocol in PROTOCOLS:
        archs = [arch for arch, followed in ARCH_PROTOCOL.items() if followed == protocol]
        for preset in PRESETS:
            s = {**PROTOCOLS[protocol], **PRESETS[preset]}
            lines.append(f"| {protocol} ({len(archs)}) | {preset} | {s['height']}×{s['width']} | SGD lr "
                         f"{s['base_lr']:g} fixed, momentum {s['momentum']:g}, wd {s['weight_decay']:g} | "
                         f"{s['batch']} | {s['max_iter']:,} | {s['class_weights']} | every {s['val_every']:,} |")
    # Architectures that keep a setting against their protocol, once, under the table (every preset).
    groups: dict[tuple, list[str]] = {}
    for arch, kept in ARCH_SETTINGS.items():
        groups.setdefault(tuple(sorted(kept.items())), []).append(arch)
    for kept, archs in groups.items():
        what = ", ".join(f"{k.replace('base_lr', 'lr')} {v:g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in kept)
        lines.append(f"\nExcept: {', '.join(archs)}: {what} at every preset (prototxt/protocol.py says why).")
    return "\n".join(lines) + "\n"
