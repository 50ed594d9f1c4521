"""The CamVid class table, read once from `data/camvid.json`: the one place the toolkit learns the class names,
their colours, the void label, the native image size, the published class weights and the split sizes.

Every other module reads these facts from `TABLE` (or the names `segnet_bvlc.dataset.camvid` re-exports);
none types them again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segnet_bvlc.core.paths import DATA


@dataclass(frozen=True)
class ClassTable:
    """A data set's label scheme and image geometry as its JSON file states them."""

    names: tuple[str, ...]
    colours: np.ndarray  # (classes + 1, 3) uint8 RGB, the void colour last
    void: int  # the label ignored by the loss and the metrics
    height: int  # native image size
    width: int
    published_weights: tuple[float, ...]  # median-frequency weights shipped with SegNet-Tutorial's models
    paper_table2_order: tuple[str, ...]  # the column order of the paper's Table 2
    split_sizes: dict[str, int]  # images per split

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @classmethod
    def from_json(cls, path: Path) -> ClassTable:
        table = json.loads(Path(path).read_text())
        return cls(
            names=tuple(table["classes"]),
            colours=np.array(table["colours"] + [table["void_colour"]], dtype=np.uint8),
            void=int(table["void_label"]),
            height=int(table["height"]),
            width=int(table["width"]),
            published_weights=tuple(table["published_weights"]),
            paper_table2_order=tuple(table["paper_table2_order"]),
            split_sizes=dict(table["sizes"]),
        )


TABLE = ClassTable.from_json(DATA / "camvid.json")
