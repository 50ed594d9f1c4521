"""A measured table against the paper's: the ranking agreement of the variants and the paper's Table 1 findings
(docs/paper.md §1), each held or not held."""

from __future__ import annotations

from segnet_bvlc.study.planning import STUDIES


def rank_agreement(ours: dict[str, float], theirs: dict[str, float]) -> dict:
    """Spearman's rho and Kendall's tau between two scorings of the same variants (SciPy)."""
    from scipy import stats  # heavy: only the report ranks

    keys = [k for k in ours if k in theirs and ours[k] is not None]
    if len(keys) < 3:
        return {"n": len(keys), "spearman": None, "kendall": None}
    a, b = [ours[k] for k in keys], [theirs[k] for k in keys]
    return {"n": len(keys), "spearman": round(float(stats.spearmanr(a, b).statistic), 3),
            "kendall": round(float(stats.kendalltau(a, b).statistic), 3)}


def cell(table: dict, arch: str, w: str, split: str, metric: str):
    """One measured value of a {arch: {weighting: {split: {metric: value}}}} table (None where missing)."""
    return table.get(arch, {}).get(w, {}).get(split, {}).get(metric)


def findings(table: dict) -> list[dict]:
    """The paper's Table 1 findings (docs/paper.md §1), each checked on `table` ({arch: {w: {test, train}}}).
    MFB test columns unless said. A finding whose runs are missing is "not measured"."""
    t = lambda a, m, w="mfb": cell(table, a, w, "test", m)  # noqa: E731
    out = []

    def check(text: str, archs: list[str], holds) -> None:
        values = {f"{a} {w} {m}": t(a, m, w) for a, w, m in archs}
        if any(v is None for v in values.values()):
            out.append({"finding": text, "status": "not measured", "values": values})
        else:
            out.append({"finding": text, "status": "held" if holds() else "not held", "values": values})

    variants = list(STUDIES["table1"])
    lowest = lambda m: min(variants, key=lambda a: t(a, m))  # noqa: E731
    check("Bilinear-Interpolation has the lowest mIoU and BF",
          [(a, "mfb", m) for a in variants for m in ("mIoU", "BF")],
          lambda: lowest("mIoU") == "bilinear-interpolation" and lowest("BF") == "bilinear-interpolation")
    top2 = {"fcn-basic-no-dim-reduction", "segnet-basic-encoder-addition"}
    check("The two variants that keep encoder maps in full (FCN-Basic-NoDimReduction, "
          "SegNet-Basic-EncoderAddition) are the top two by mIoU",
          [(a, "mfb", "mIoU") for a in variants],
          lambda: set(sorted(variants, key=lambda a: -t(a, "mIoU"))[:2]) == top2)
    check("SegNet-Basic and FCN-Basic (compressed encoder information) beat FCN-Basic-NoAddition (none) on mIoU "
          "and BF",
          [(a, "mfb", m) for a in ("segnet-basic", "fcn-basic", "fcn-basic-no-addition") for m in ("mIoU", "BF")],
          lambda: all(t(a, m) > t("fcn-basic-no-addition", m) for a in ("segnet-basic", "fcn-basic")
                      for m in ("mIoU", "BF")))
    check("SegNet-Basic beats SegNet-Basic-SingleChannelDecoder (a larger decoder helps) on mIoU and BF",
          [(a, "mfb", m) for a in ("segnet-basic", "segnet-basic-single-channel-decoder") for m in ("mIoU", "BF")],
          lambda: all(t("segnet-basic", m) > t("segnet-basic-single-channel-decoder", m) for m in ("mIoU", "BF")))
    check("MFB raises C and lowers G against NF for SegNet-Basic",
          [("segnet-basic", w, m) for w in ("mfb", "nf") for m in ("G", "C")],
          lambda: t("segnet-basic", "C") > t("segnet-basic", "C", "nf")
          and t("segnet-basic", "G") < t("segnet-basic", "G", "nf"))
    return out
