"""A noisy | each model | classical filters | clean grid on a face that is not from FER2013, for the README.

No part of FER2013 may be committed, so the README's grid shows a face that ships inside scikit-image: the
astronaut portrait (NASA's public-domain photo of Eileen Collins), cropped to the face and reduced to 48x48 the
way FER2013's faces are framed. It is corrupted with the hold-out's own seeded noise, one row per condition, and
restored by model files and by the classical filters. A filter's parameter is picked by its PSNR against the
clean face (an oracle: generous to the classical side, which has no validation faces of this kind here).

    python -m results.showcase --out docs/showcase.png [--model FILE ...] [--image PHOTO --box TOP,LEFT,SIDE]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from denoise_core.baselines import BASELINES, TUNABLE
from denoise_core.checkpoint import load_model
from denoise_core.cli import ArgumentParser, run_cli, setup_logging
from denoise_core.data import SIDE, to_float
from denoise_core.denoise import SHIPPED_MODELS, denoise_array
from denoise_core.errors import InputError, OutputExists
from denoise_core.evaluate import score_images
from denoise_core.holdout import DEFAULT_SEED, make_holdout
from results.classical import GRIDS
from results.grids import plot_grid

CONDITIONS = ("sp:0.1", "sp:0.3", "sp:0.5", "sp:0.7", "gauss:10", "gauss:25", "gauss:50", "sp:0.1+gauss:10", "rv:0.1", "sp:0.1+jpeg:90")
# the strongest classical filter for salt-and-pepper, for random-valued impulses and noise saved as JPEG, and for Gaussian noise
FILTERS = ("biharmonic_inpaint", "median3", "bm3d")
ASTRONAUT_BOX = (50, 145, 150)  # top, left, side of the face in skimage.data.astronaut(): FER2013's framing


def face_from_photo(photo: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """The square ``box`` of a photo as a uint8 48x48 grayscale face (Lanczos reduction)."""
    from PIL import Image

    top, left, side = box
    if top < 0 or left < 0 or top + side > photo.shape[0] or left + side > photo.shape[1]:
        raise InputError(f"box {box} (top, left, side) lies outside the {photo.shape[1]}x{photo.shape[0]} photo")
    crop = Image.fromarray(np.ascontiguousarray(photo[top:top + side, left:left + side])).convert("L")
    return np.array(crop.resize((SIDE, SIDE), Image.LANCZOS), dtype=np.uint8)


def astronaut_face() -> np.ndarray:
    from skimage import data

    return face_from_photo(data.astronaut(), ASTRONAUT_BOX)


def oracle_filter(name: str, noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The filter at the grid value (``results.classical.GRIDS``) with the best PSNR on each face, or at its default."""
    if name not in TUNABLE:
        return BASELINES[name](noisy)
    candidates = np.stack([BASELINES[name](noisy, **{TUNABLE[name]: value}) for value in GRIDS[name]])
    best = np.array([score_images(candidate, clean)[0] for candidate in candidates]).argmax(axis=0)
    return candidates[best, np.arange(len(noisy))]


def showcase_columns(face: np.ndarray, models: dict[str, torch.nn.Module], conditions: tuple[str, ...] = CONDITIONS,
                     filters: tuple[str, ...] = FILTERS, seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Grid columns (noisy, each model, each filter, clean), one row per condition, as float faces in [0, 1]."""
    holdout = make_holdout(face[None], conditions, seed)
    noisy = to_float(holdout.noisy[:, 0])
    clean = np.repeat(to_float(holdout.clean), len(conditions), axis=0)
    columns = {"noisy": noisy}
    for name, model in models.items():
        columns[name] = np.clip(denoise_array(model, noisy), 0.0, 1.0)
    for name in filters:
        columns[name.replace("_", " ")] = np.clip(oracle_filter(name, noisy, clean), 0.0, 1.0)
    columns["clean"] = clean
    return columns


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m results.showcase", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write (refused if it exists, unless --overwrite)")
    parser.add_argument("--model", type=Path, action="append", help="model file; repeat for several (default: the shipped models)")
    parser.add_argument("--image", type=Path, help="a photo to take the face from (default: scikit-image's astronaut)")
    parser.add_argument("--box", help="TOP,LEFT,SIDE of the face in --image, in pixels (default: the whole image, if square)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)

    def run() -> None:
        setup_logging(False)
        if args.out.exists() and not args.overwrite:
            raise OutputExists(f"{args.out} exists; pass --overwrite to replace it")
        if args.box and not args.image:
            raise InputError("--box needs --image")
        paths = args.model or list(SHIPPED_MODELS)
        models = {path.stem: load_model(path, "cpu")[0] for path in paths}
        if args.image:
            from PIL import Image

            photo = np.asarray(Image.open(args.image).convert("L"))
            box = tuple(int(v) for v in args.box.split(",")) if args.box else (0, 0, min(photo.shape))
            if len(box) != 3:
                raise InputError(f"--box {args.box!r}: write TOP,LEFT,SIDE, e.g. 50,145,150")
            face, source = face_from_photo(photo, box), args.image.name
        else:
            face, source = astronaut_face(), "scikit-image's astronaut portrait"
        columns = showcase_columns(face, models)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plot_grid(columns, args.out, f"a face from {source}, not FER2013", row_labels=list(CONDITIONS))
        print(f"wrote {args.out}")

    run_cli(run, "results.showcase")


if __name__ == "__main__":
    main()
