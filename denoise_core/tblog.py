"""TensorBoard logging of training epochs: scalars, a noisy | denoised | clean grid, and HParams.

The train CLI and every study trial write through these functions, so ``tensorboard --logdir`` compares
a local run and a cluster study the same way.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from denoise_core.fit import EpochReport

SCALARS = ("train_loss", "val_loss", "val_psnr", "val_ssim", "noisy_psnr", "lr", "images_per_second")
TAGS = {"train_loss": "train/loss", "lr": "train/lr", "images_per_second": "train/images_per_second", "val_loss": "val/loss",
        "val_psnr": "val/psnr", "val_ssim": "val/ssim", "noisy_psnr": "val/noisy_input_psnr"}
GRID_TAG = "val/noisy_denoised_clean"
ROW_LABELS = ("noisy", "denoised", "clean")  # the rows of every grid, in order
LABEL_WIDTH = 56


def scalar_tag(name: str) -> str:
    """The TensorBoard name of an epoch metric, the same for a train CLI run and a study trial."""
    return TAGS[name]


def image_grid(rows: list[torch.Tensor], pad: int = 2, labels: tuple[str, ...] = ROW_LABELS) -> torch.Tensor:
    """Stack image rows (each (K, 1, H, W) in [0, 1]) into one (1, H', W') picture with white gutters, each row labelled."""
    pictures = []
    for index, row in enumerate(rows):
        k, _, h, w = row.shape
        offset = LABEL_WIDTH if labels else 0
        strip = torch.ones(1, h, offset + k * (w + pad) - pad)
        if labels:
            strip[:, :, :offset] = _label(labels[index] if index < len(labels) else "", offset, h)
        for i in range(k):
            strip[:, :, offset + i * (w + pad):offset + i * (w + pad) + w] = row[i].clamp(0, 1)
        pictures.append(strip)
    width = max(p.shape[-1] for p in pictures)
    gutter = torch.ones(1, pad, width)
    parts = []
    for index, picture in enumerate(pictures):
        if index:
            parts.append(gutter)
        parts.append(torch.nn.functional.pad(picture, (0, width - picture.shape[-1]), value=1.0))
    return torch.cat(parts, dim=1)


def _label(text: str, width: int, height: int) -> torch.Tensor:
    """Black text on white, ``width`` x ``height``, as a (1, H, W) tensor in [0, 1]."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, height), 255)
    ImageDraw.Draw(canvas).text((2, height // 2 - 5), text, fill=0)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)[None]


def write_epoch(writer: SummaryWriter, report: EpochReport, grid_every: int = 5) -> None:
    for name in SCALARS:
        writer.add_scalar(scalar_tag(name), getattr(report, name), report.epoch)
    if grid_every and (report.epoch == 1 or report.epoch % grid_every == 0 or report.should_stop):
        writer.add_image(GRID_TAG, image_grid(list(report.examples)), report.epoch)
    writer.flush()


def write_hparams(writer: SummaryWriter, params: dict[str, Any], metrics: dict[str, float], domains: Mapping[str, list[Any]] | None = None) -> None:
    """HParams with the final metrics, in the writer's own directory so trials line up in the HParams tab.

    ``domains`` (a setting's every possible value, in order) becomes the tab's list of values to tick; a setting whose
    values do not all come out as one type gets none.
    """
    domains = domains or {}
    shown = {k: hparam_value(v, domains.get(k, ())) for k, v in params.items()}
    listed = {k: [hparam_value(d, domain) for d in domain] for k, domain in domains.items() if k in shown and domain}
    listed = {k: values for k, values in listed.items() if {type(v) for v in values} == {type(shown[k])}}
    experiment, session_start, session_end = hparams(shown, {f"hparam/{k}": v for k, v in metrics.items()}, listed)
    file_writer = writer._get_file_writer()
    for summary in (experiment, session_start, session_end):
        file_writer.add_summary(summary)
    for name, value in metrics.items():
        writer.add_scalar(f"hparam/{name}", value)
    writer.flush()


def hparam_value(value: Any, domain: Sequence[Any] = ()) -> float | str:
    """A setting as the HParams tab should show it. The tab prints every number to five digits (16 as 16.000, True as
    1.0000), so whole numbers, booleans and anything else go as text; a fraction stays a number, and so does a whole
    number whose setting can also take fractions (``{choice: [0, 0.1]}``)."""
    fractional = isinstance(value, float) or any(isinstance(d, float) for d in domain)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and fractional:
        return float(value)
    return str(value)
