"""Boundary F1 (BF), the paper's boundary metric.

BF follows the paper (TPAMI 2017 §3.3, after Csurka et al. BMVC 2013): for each image and class, the
boundary of the class in the ground truth and in the prediction are matched with a tolerance of 0.75 % of
the image diagonal (4.5 px at CamVid's native size); F1 per class; the image's BF is the mean F1 over the classes
present in the GT image; the dataset's BF is the mean over images.  Details and interpretations are on
`boundary_stats` and `BoundaryStats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, maximum_flow

from segnet_bvlc.dataset.camvid import NUM_CLASSES, VOID

BF_TOLERANCE = 0.0075  # fraction of the image diagonal: computeBFmeasure.m's maxDist, the paper's 0.75 %
BF_RULES = ("paper", "public")
BF_VOID_MODES = ("mask", "keep")
_SMALL_PIECE = 2000  # edges; see _maximum_matching


def check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} must be 2-D label maps "
                         "of one size")
    if gt.dtype.kind not in "iub" or pred.dtype.kind not in "iub":
        raise ValueError(f"label maps must be integer arrays, got {gt.dtype} and {pred.dtype}")
    return gt, pred


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map of a segmentation, as BSDS `seg2bmap.m` (at the segmentation's own size).

    A pixel is a boundary pixel when its right, bottom or bottom-right neighbour has a different value.
    Neighbours outside the image never count: in the last row only the right neighbour is compared, in
    the last column only the bottom one, and the bottom-right corner is never a boundary pixel.  The
    boundary is one pixel thick and lies on the top/left side of each edge.  On a binary class mask this
    is also exactly what computeBFmeasure.m's `seg2bdry(mask, 'imageSize')` returns: both mark pixel
    (i, j) when the 2x2 block {i, i+1} x {j, j+1} (clipped to the image) is not uniform.
    """
    seg = np.asarray(seg)
    b = np.zeros(seg.shape, dtype=bool)
    b[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    b[:-1, :] |= seg[:-1, :] != seg[1:, :]
    b[:-1, :-1] |= seg[:-1, :-1] != seg[1:, 1:]
    return b


def tolerance_pixels(shape: tuple[int, int], tolerance: float = BF_TOLERANCE) -> float:
    """Matching distance in pixels: a fraction of the image diagonal (BSDS correspondPixels' maxDist)."""
    return tolerance * math.hypot(shape[0], shape[1])


@lru_cache(maxsize=16)
def _offsets(radius: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer offsets (dy, dx) with dy^2 + dx^2 <= radius^2 (BSDS match.cc: `d2 > maxDist^2` is skipped)."""
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    d2 = (dy * dy + dx * dx).ravel()
    order = np.argsort(d2, kind="stable")  # nearest first, for the greedy warm start
    keep = order[d2[order] <= radius * radius]
    return dy.ravel()[keep].astype(np.int64), dx.ravel()[keep].astype(np.int64), r


def _greedy_matching(rows: np.ndarray, gts: np.ndarray, rank: np.ndarray, n_pred: int,
                     n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """A maximal matching built in vectorised rounds, a parallel form of the Karp-Sipser minimum-degree
    heuristic: every free predicted pixel proposes to the free GT candidate that has the fewest free
    neighbours left (ties: the nearest, by `rank`), and every GT pixel accepts the proposer with the
    fewest options (ties: the lowest number).  Edges (rows[i], gts[i]) come sorted by row.  Only a warm
    start: `_maximum_matching` then augments it to a maximum matching."""
    match_p = np.full(n_pred, -1, dtype=np.int64)
    match_g = np.full(n_gt, -1, dtype=np.int64)
    span = int(rank.max()) + 1 if len(rank) else 1
    while len(rows):
        deg_p = np.bincount(rows, minlength=n_pred)
        score = np.bincount(gts, minlength=n_gt)[gts] * span + rank
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        segment = np.cumsum(np.r_[True, rows[1:] != rows[:-1]]) - 1
        best = np.flatnonzero(score == np.minimum.reduceat(score, starts)[segment])
        chosen = best[np.r_[True, segment[best][1:] != segment[best][:-1]]]  # first best edge of each row
        p, g = rows[chosen], gts[chosen]
        order = np.lexsort((p, deg_p[p], g))
        win = order[np.r_[True, g[order][1:] != g[order][:-1]]]
        match_p[p[win]] = g[win]
        match_g[g[win]] = p[win]
        keep = (match_p[rows] < 0) & (match_g[gts] < 0)
        rows, gts, rank = rows[keep], gts[keep], rank[keep]
    return match_p, match_g


def _maximum_matching(pred_key: np.ndarray, gt_key: np.ndarray, shape: tuple[int, int],
                      radius: float) -> np.ndarray:
    """For every predicted boundary pixel, whether it is matched in a maximum-cardinality bipartite matching.

    Keys are `class * H*W + y * W + x`; a predicted pixel and a GT pixel may be matched when they belong to
    the same class and lie within `radius` pixels (Euclidean).  All classes of an image form one graph of
    disjoint components, solved at once.

    BSDS `correspondPixels` solves a minimum-cost assignment in which leaving a pixel unmatched costs
    100 x maxDist and a match costs its distance; the number of matches it finds is therefore the maximum
    cardinality (up to its sparse random outlier graph), which is what we compute exactly.

    How: a greedy maximal matching (`_greedy_matching`), then the augmenting paths it misses, found as a
    maximum flow (Dinic) in its residual network: s -> free predicted pixel -> GT pixel (unmatched edges) ->
    its matched predicted pixel -> ... -> free GT pixel -> t, one connected piece of boundary at a time.
    Each unit of flow is one augmenting path, which keeps every matched pixel matched and adds its two
    ends.  Not `scipy.sparse.csgraph.maximum_bipartite_matching`: its Hopcroft-Karp never prunes dead ends
    (a known scipy limitation) and takes from 1 s to minutes on these grid-like graphs.  About 0.1 s of CPU
    per full-size CamVid image.
    """
    n_pred, n_gt = len(pred_key), len(gt_key)
    if n_pred == 0 or n_gt == 0:
        return np.zeros(n_pred, dtype=bool)
    rows, gts, rank = _candidate_edges(pred_key, gt_key, shape, radius)
    match_p, match_g = _greedy_matching(rows, gts, rank, n_pred, n_gt)
    matched = match_p >= 0
    free_p = np.flatnonzero(~matched & (np.bincount(rows, minlength=n_pred) > 0))
    free_g = np.flatnonzero(match_g < 0)
    if len(free_p) == 0 or len(free_g) == 0:
        return matched
    _augment(matched, match_p, n_gt, rows, gts, free_p, free_g)
    return matched


def _candidate_edges(pred_key: np.ndarray, gt_key: np.ndarray, shape: tuple[int, int],
                     radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (predicted node, GT node, rank of the offset: nearest first) of the pairs within `radius`, sorted
    by predicted node."""
    n_gt = len(gt_key)
    h, w = shape
    dy, dx, r = _offsets(radius)
    # Padded lookup table (class, y, x) -> GT node id, so that every offset lands inside the array.
    hp, wp = h + 2 * r, w + 2 * r
    num_cls = int(max(pred_key.max(), gt_key.max()) // (h * w)) + 1
    table = np.full(num_cls * hp * wp, -1, dtype=np.int32)

    def padded(key: np.ndarray) -> np.ndarray:
        c, rest = np.divmod(key, h * w)
        y, x = np.divmod(rest, w)
        return c * (hp * wp) + (y + r) * wp + (x + r)

    table[padded(gt_key)] = np.arange(n_gt, dtype=np.int32)
    # (n_pred, n_offsets) GT node ids or -1, nearest first
    candidates = table[padded(pred_key)[:, None] + (dy * wp + dx)[None, :]]
    rows, rank = np.nonzero(candidates >= 0)
    gts = candidates[rows, rank].astype(np.int64)
    return rows, gts, rank


def _augment(matched: np.ndarray, match_p: np.ndarray, n_gt: int, rows: np.ndarray, gts: np.ndarray,
             free_p: np.ndarray, free_g: np.ndarray) -> None:
    """Mark in `matched` the predicted pixels that the augmenting paths of the greedy matching `match_p` add:
    a maximum flow (Dinic) in its residual network, one connected piece of boundary at a time (the method is
    `_maximum_matching`'s docstring)."""
    n_pred = len(match_p)
    # Residual network; nodes: predicted 0..P-1, GT P..P+G-1, s = P+G, t = P+G+1.
    unmatched_edge = gts != match_p[rows]
    mp = np.flatnonzero(matched)
    s, t = n_pred + n_gt, n_pred + n_gt + 1
    src = np.concatenate([np.full(len(free_p), s), rows[unmatched_edge], n_pred + match_p[mp], n_pred + free_g])
    dst = np.concatenate([free_p, n_pred + gts[unmatched_edge], mp, np.full(len(free_g), t)])
    n = t + 1
    # Dinic costs (number of phases) x (edges): solve each connected piece of boundary on its own, so that
    # the long augmenting paths of one piece do not make every other piece pay for extra phases.  Pieces
    # under _SMALL_PIECE edges are solved together (few phases anyway; fewer calls).
    inner = (src != s) & (dst != t)
    graph = csr_matrix((np.ones(int(inner.sum()), dtype=np.int8), (src[inner], dst[inner])), shape=(n, n))
    _, piece = connected_components(graph, directed=False)
    edge_piece = np.where(src == s, piece[dst], piece[src])
    size = np.bincount(edge_piece, minlength=int(piece.max()) + 1)
    edge_group = np.where(size[edge_piece] < _SMALL_PIECE, -1, edge_piece)
    node_group = np.where(size[piece] < _SMALL_PIECE, -1, piece)
    # Local node numbers within each group: 0 = source, 1 = sink, then the group's nodes in order.
    by_group = np.argsort(node_group, kind="stable")
    sorted_group = node_group[by_group]
    group_start = np.searchsorted(sorted_group, sorted_group)
    local = np.empty(n, dtype=np.int64)
    local[by_group] = np.arange(n) - group_start + 2
    local_src = np.where(src == s, 0, local[src])
    local_dst = np.where(dst == t, 1, local[dst])
    order = np.argsort(edge_group, kind="stable")
    sorted_edge_group = edge_group[order]
    first = np.flatnonzero(np.r_[True, sorted_edge_group[1:] != sorted_edge_group[:-1]])
    labels = sorted_edge_group[first]
    for label, a, b in zip(labels, first, np.append(first[1:], len(order))):
        e = order[a:b]
        if not ((src[e] == s).any() and (dst[e] == t).any()):
            continue  # no free predicted or no free GT pixel in this piece: nothing to augment
        m = int(max(local_src[e].max(), local_dst[e].max())) + 1
        net = csr_matrix((np.ones(len(e), dtype=np.int32), (local_src[e], local_dst[e])), shape=(m, m))
        flow = maximum_flow(net, 0, 1, method="dinic")
        if flow.flow_value:
            out = flow.flow[0].tocoo()
            gained = out.col[out.data > 0]  # local numbers of the newly matched predicted pixels
            offset = np.searchsorted(sorted_group, label)
            matched[by_group[offset + gained - 2]] = True


def match_boundaries(bmap_pred: np.ndarray, bmap_gt: np.ndarray, radius: float) -> int:
    """Size of a maximum bipartite matching between two boundary maps, pixels matchable within `radius` px."""
    bmap_pred, bmap_gt = np.asarray(bmap_pred, bool), np.asarray(bmap_gt, bool)
    if bmap_pred.shape != bmap_gt.shape:
        raise ValueError(f"boundary maps differ in size: {bmap_pred.shape} vs {bmap_gt.shape}")
    matched = _maximum_matching(np.flatnonzero(bmap_pred), np.flatnonzero(bmap_gt), bmap_gt.shape, radius)
    return int(matched.sum())


@lru_cache(maxsize=8)
def _neighbour_index(shape: tuple[int, int]) -> tuple[tuple[np.ndarray, tuple, tuple], ...]:
    """(flat index of p, slice of p, slice of its neighbour) for the right, bottom, bottom-right pairs."""
    h, w = shape
    index = np.arange(h * w, dtype=np.int64).reshape(h, w)
    pairs = (
        ((slice(None), slice(0, -1)), (slice(None), slice(1, None))),        # right
        ((slice(0, -1), slice(None)), (slice(1, None), slice(None))),        # bottom
        ((slice(0, -1), slice(0, -1)), (slice(1, None), slice(1, None))),    # bottom-right
    )
    return tuple((index[a].ravel(), a, b) for a, b in pairs)


def _class_boundary_keys(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Sorted keys `c * H*W + pixel` of seg2bmap(labels == c) for every class c in 0..K-1, in one pass.

    seg2bmap(labels == c) marks p when p and a neighbour q differ in the mask, i.e. when labels differ at
    p and q and one of them is c; so each differing (p, q) pair marks p for class labels[p] and labels[q].
    `labels` holds 0..K, K standing for "no class" (void, or anything out of range).
    """
    hw = labels.size
    keys = []
    for index, a, b in _neighbour_index(labels.shape):
        la, lb = labels[a].ravel(), labels[b].ravel()
        diff = la != lb
        pix = index[diff]
        keys.append(la[diff] * hw + pix)
        keys.append(lb[diff] * hw + pix)
    keys = np.unique(np.concatenate(keys))
    return keys[keys < num_classes * hw]


@dataclass
class BoundaryStats:
    """Per-class boundary counts of one image (arrays of length K).

    matched: predicted boundary pixels matched to a GT boundary pixel of the same class (equal to the
             number of matched GT pixels, the matching being one-to-one).
    pred, gt: boundary pixels per class in the prediction and in the ground truth.
    gt_present, pred_present: whether the class occurs at all in the GT / prediction.
    """

    matched: np.ndarray
    pred: np.ndarray
    gt: np.ndarray
    gt_present: np.ndarray
    pred_present: np.ndarray

    def f1(self) -> np.ndarray:
        """F1 per class as computeBFmeasure.m: P = matched/pred (0 without predicted boundary), R =
        matched/gt (0 without GT boundary), F1 = 2PR/(P+R), 0 when P+R = 0.

        One case the script scores 0 and we score 1: neither map has a boundary pixel of the class and the
        class is present in both (the whole image is that class in GT and prediction).  It can only
        matter under the paper rule and never occurs on CamVid.
        """
        m = self.matched.astype(np.float64)
        p = np.divide(m, self.pred, out=np.zeros_like(m), where=self.pred > 0)
        r = np.divide(m, self.gt, out=np.zeros_like(m), where=self.gt > 0)
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(m), where=(p + r) > 0)
        agree = (self.pred == 0) & (self.gt == 0) & self.gt_present & self.pred_present
        f1[agree] = 1.0
        return f1

    def counted(self, rule: str = "paper") -> np.ndarray:
        """Which classes enter the image's mean.

        paper:  classes present in the GT image (TPAMI 2017 §3.3, Csurka et al.).
        public: classes with a boundary in the GT or in the prediction (computeBFmeasure.m's classcount),
                so a class predicted but absent from the GT counts with F1 = 0.
        """
        if rule == "paper":
            return self.gt_present.copy()
        if rule == "public":
            return (self.gt > 0) | (self.pred > 0)
        raise ValueError(f"unknown BF rule {rule!r} (choose from {', '.join(BF_RULES)})")

    def image_bf(self, rule: str = "paper") -> float | None:
        """Mean F1 over the counted classes; None when no class counts (an all-void image)."""
        counted = self.counted(rule)
        return float(self.f1()[counted].mean()) if counted.any() else None


def boundary_stats(gt: np.ndarray, pred: np.ndarray, num_classes: int = NUM_CLASSES, void: int = VOID,
                   tolerance: float = BF_TOLERANCE, void_mode: str = "mask") -> BoundaryStats:
    """Boundary counts of every class of one image.

    Class boundaries are seg2bmap(GT == c) and seg2bmap(Pred == c); the tolerance is `tolerance` x the
    image diagonal (0.75 % -> 4.5 px at CamVid's native size); matching is a maximum-cardinality bipartite matching.

    void_mode (an interpretation: the paper excludes void pixels from evaluation but says nothing about
    boundaries; computeBFmeasure.m does not mask them):
      "mask" (default): the prediction at GT-void pixels is set to void before extracting boundaries, the
              same `pred(pixels_ignore) = 0` that compute_test_results.m applies for G/C/mIoU.  Whatever
              the network predicts inside unlabelled regions then neither adds nor removes boundary
              pixels; a class edge against void stays a boundary in both maps.
      "keep": the public script: the prediction is used as is, so predicted boundaries inside void
              regions count as unmatched (and, under the public rule, so do classes predicted only there).
    """
    gt, pred = check_pair(gt, pred)
    if void_mode not in BF_VOID_MODES:
        raise ValueError(f"unknown void mode {void_mode!r} (choose from {', '.join(BF_VOID_MODES)})")
    k = num_classes
    # Labels as 0..K, K meaning "no class" (void or out of range); int64 keeps the key arithmetic exact.
    g = gt.astype(np.int64)
    g = np.where((g >= 0) & (g < k) & (g != void), g, k)
    p = pred.astype(np.int64)
    p = np.where((p >= 0) & (p < k), p, k)
    if void_mode == "mask":
        p = np.where(g == k, k, p)
    gt_key = _class_boundary_keys(g, k)
    pred_key = _class_boundary_keys(p, k)
    matched = _maximum_matching(pred_key, gt_key, gt.shape, tolerance_pixels(gt.shape, tolerance))
    hw = gt.size
    return BoundaryStats(
        matched=np.bincount(pred_key[matched] // hw, minlength=k),
        pred=np.bincount(pred_key // hw, minlength=k),
        gt=np.bincount(gt_key // hw, minlength=k),
        gt_present=np.bincount(g.ravel(), minlength=k + 1)[:k] > 0,
        pred_present=np.bincount(p.ravel(), minlength=k + 1)[:k] > 0,
    )


def boundary_f1(gt: np.ndarray, pred: np.ndarray, rule: str = "paper", **kwargs) -> float | None:
    """BF of one image (see `boundary_stats` for the keyword arguments, `BoundaryStats.counted` for rule)."""
    return boundary_stats(gt, pred, **kwargs).image_bf(rule)
