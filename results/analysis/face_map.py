"""The region map of the aligned 48x48 FER2013 face, which every per-region analysis sums over."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


SIDE = 48
REGION_NAMES = ("border/hair", "forehead", "cheeks", "jaw", "brows", "eyes", "nose", "mouth")
FEATURES = ("eyes", "brows", "nose", "mouth")
WRINKLES = ("forehead", "cheeks")


@dataclass(frozen=True)
class RegionMap:
    """One label per pixel of the aligned 48x48 face, indexing ``names``."""

    labels: np.ndarray  # int64 (48, 48)
    names: tuple[str, ...]

    def mask(self, *names: str) -> np.ndarray:
        """Boolean (48, 48) union of the named regions."""
        return np.isin(self.labels, [self.names.index(name) for name in names])

    def weights(self) -> np.ndarray:
        """(regions, 48*48) 0/1 rows, so per-region sums over a batch are one matrix product."""
        return (self.labels.reshape(1, -1) == np.arange(len(self.names))[:, None]).astype(np.float64)


def face_regions() -> RegionMap:
    """The region map of the aligned FER2013 face: border/hair, forehead, cheeks, jaw, brows, eyes, nose, mouth.

    FER2013 faces are detected, centred and scaled alike, so one fixed map fits most of them. It was drawn
    on the mean of all 35,875 FER2013 faces (and checked on random single faces): the eyes are the two dark
    blobs centred at row 17.5, columns 14.5 and 32.5 (mirror images about the centre column 23.5), the
    brows the band just above them (rows 10-14), the nose a bright ridge down the midline (columns 21-26,
    rows 15-23) widening to the nostrils (columns 19-28, rows 24-31), the mouth a dark band centred at row
    38 (columns 15-32), and the face an ellipse centred at (22, 23.5) with half-axes 27 rows x 17.5
    columns. Inside the face: forehead above row 11 (and the gap between the brows), jaw from row 33 down
    (chin and jawline), cheeks in between; outside it: border/hair. Parts are ellipses and bands painted
    in this order, later ones on top, so every pixel gets exactly one label, and the map is exactly
    left/right symmetric.
    """
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    centre = (SIDE - 1) / 2
    off_midline = np.abs(x - centre)

    def ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0

    def pair(cy: float, offset: float, ry: float, rx: float) -> np.ndarray:
        return ellipse(cy, centre - offset, ry, rx) | ellipse(cy, centre + offset, ry, rx)

    face = ellipse(22.0, centre, 27.0, 17.5)
    parts = [
        ("forehead", face & ((y < 11) | ((y < 15) & (off_midline <= 2.5)))),
        ("cheeks", face & (y >= 11) & (y < 33) & ~((y < 15) & (off_midline <= 2.5))),
        ("jaw", face & (y >= 33)),
        ("brows", pair(12.0, 9.0, 2.0, 6.5)),
        ("eyes", pair(17.5, 9.0, 3.0, 5.5)),
        ("nose", ((y >= 15) & (y < 24) & (off_midline <= 2.5)) | ((y >= 24) & (y <= 31) & (off_midline <= 5.0))),
        ("mouth", ellipse(38.0, centre, 3.0, 9.0)),
    ]
    labels = np.zeros((SIDE, SIDE), dtype=np.int64)  # 0: border/hair
    for name, mask in parts:
        labels[mask] = REGION_NAMES.index(name)
    return RegionMap(labels=labels, names=REGION_NAMES)

