"""``python -m denoise_core.denoise --model MODEL INPUT OUTPUT``: restore one's own 48x48 faces.

INPUT is a PNG/JPG file, a folder of them (written to OUTPUT with the same relative names), or a
``.npy`` array shaped (N, 48, 48), uint8 or float in [0, 1] (written back in the same dtype). Colour
images are converted to grayscale. An existing OUTPUT is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format
import torch

from denoise_core.checkpoint import load_model
from denoise_core.cli import ArgumentParser, run_cli, setup_logging
from denoise_core.data import IMAGE_SUFFIXES, SIDE, read_face
from denoise_core.errors import InputError, MissingFile, OutputExists, describe
from denoise_core.files import write_atomic
from denoise_core.jpeg_trace import looks_jpeg
from denoise_core.noise import most_specialised, trained_kinds
from denoise_core.inference import denoise_tensor, resolve_device

log = logging.getLogger("denoise_core.denoise")
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "fer2013-blind.pt"  # every noise kind, JPEG and random-valued too
SHIPPED_IMPULSE_MODEL = SHIPPED_MODEL.with_name("fer2013-impulse.pt")  # pure salt-and-pepper only
SHIPPED_GAUSS_MODEL = SHIPPED_MODEL.with_name("fer2013-gauss.pt")  # pure Gaussian noise only
SHIPPED_MODELS = (SHIPPED_MODEL, SHIPPED_IMPULSE_MODEL, SHIPPED_GAUSS_MODEL)


def denoise_array(model: torch.nn.Module, images: np.ndarray, device: torch.device | str = "cpu", batch_size: int | None = None) -> np.ndarray:
    """Float32 faces (N, 48, 48) in [0, 1] in, restored float32 faces out."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1).to(device)
    return denoise_tensor(model, tensor, batch_size).squeeze(1).cpu().numpy()


def read_npy(path: Path) -> tuple[np.ndarray, np.dtype]:
    """Faces as float32 in [0, 1] and the file's dtype. A file is data: its header is checked first and pickled
    objects are never loaded, so any bad file is one InputError naming it."""
    how = "save faces with numpy.save as uint8 (0..255) or float in [0, 1], shaped (N, 48, 48)"
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty; {how}")
    try:
        with open(path, "rb") as handle:
            version = npy_format.read_magic(handle)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
    except (EOFError, ValueError) as error:
        raise InputError(f"{path}: is not a .npy array ({describe(error)}); {how}") from None
    if dtype.hasobject:
        raise InputError(f"{path}: holds Python objects (dtype {dtype}), which are never loaded; {how}")
    if len(shape) != 3 or shape[1:] != (SIDE, SIDE):
        raise InputError(f"{path}: expected an array shaped (N, 48, 48), got {shape}; one face is (1, 48, 48)")
    if shape[0] == 0:
        raise InputError(f"{path}: holds no faces (shape {shape}); {how}")
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise InputError(f"{path}: dtype {dtype} is not supported; use uint8 (0..255) or float in [0, 1]")
    try:
        array = np.load(path, allow_pickle=False)
    except (EOFError, ValueError, OSError) as error:
        raise InputError(f"{path}: is truncated or damaged ({describe(error)}); save it again with numpy.save") from None
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0, array.dtype
    if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
        raise InputError(f"{path}: float arrays must hold values in [0, 1]; scale uint8 data by 1/255 or save it as uint8")
    return array.astype(np.float32), array.dtype


def read_image(path: Path) -> np.ndarray:
    """One face as float32 in [0, 1]; 16-bit images are scaled by their depth, a file that is not a face is one InputError."""
    return read_face(path, InputError).astype(np.float32) / 255.0


def write_image(path: Path, image: np.ndarray) -> None:
    """An 8-bit grayscale image in the format its suffix names, written whole or not at all."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)).save(buffer, format=Image.registered_extensions()[path.suffix.lower()])
    write_atomic(path, buffer.getvalue())


def fit_warning(model: torch.nn.Module, training_noise: str, images: np.ndarray, source: Path) -> str | None:
    """Why ``model`` does not fit these faces, if it does not, naming the model to use instead: a switching model
    replaces only pixels at exactly 0 or 255, which noise saved as JPEG, random-valued impulses and Gaussian noise
    do not leave; and a model never trained on noise saved as JPEG fails on faces that were saved as JPEG."""
    config = getattr(model, "config", None)
    saved, quality = looks_jpeg(images)
    if getattr(config, "switching", False):
        share = float(((images <= 0.0) | (images >= 1.0)).mean())
        if share < 0.005:
            better = (shipped_model_for("jpeg") if saved else None) or SHIPPED_MODEL
            return (f"{source}: only {share:.2%} of its pixels are exactly 0 or 255, the only pixels this model (switching output) changes, "
                    f"so it comes back almost as it was; for noise that is not pure salt-and-pepper use {_shown(better)}")
    if saved and training_noise and "jpeg" not in trained_kinds(training_noise):
        better = shipped_model_for("jpeg")
        advice = (f"use {_shown(better)}, trained on it" if better is not None else
                  "no shipped model is trained on it yet, and a 3x3 median (denoise_core.baselines.median) restores such faces better")
        return f"{source}: looks saved as JPEG (about quality {quality}), which this model was not trained on; {advice}"
    return None


def shipped_model_for(kind: str) -> Path | None:
    """The most specialised shipped model trained for a noise kind (``NoiseSpec.kind``); None if none is."""
    kinds = {path: trained_kinds(load_model(path, "cpu")[1]["config"]["noise"]) for path in SHIPPED_MODELS if path.is_file()}
    return most_specialised(kinds, kind)


def _shown(path: Path) -> Path:
    return path.relative_to(SHIPPED_MODEL.parents[1])


def check_target(source: Path, target: Path, overwrite: bool) -> None:
    """``--overwrite`` replaces earlier outputs, never the input: OUTPUT may not be INPUT, lie inside an input folder
    (a second run would denoise its own outputs again) or be of another kind than INPUT."""
    if target.resolve() == source.resolve():
        raise InputError(f"output {target} is the input itself; write the restored faces to another path")
    if source.is_dir() and source.resolve() in target.resolve().parents:
        raise InputError(f"output {target} lies inside the input folder {source}; choose a folder outside it")
    if not target.exists():
        return
    if not overwrite:
        raise OutputExists(f"output {target} exists; choose another path or pass --overwrite")
    if source.is_dir() != target.is_dir():
        wanted, found = ("a folder", "a file") if source.is_dir() else ("a file", "a folder")
        raise OutputExists(f"output {target} is {found}, but input {source} needs {wanted} as OUTPUT; choose another path")


def denoise_path(model: torch.nn.Module, source: Path, target: Path, overwrite: bool = False, device: str | torch.device = "cpu",
                 training_noise: str = "") -> int:
    """Denoise a file, folder or .npy into the same form; returns the number of faces written. ``training_noise``
    (the model's training noise spec) lets it warn when the faces are not what the model was trained on."""

    def restore(images: np.ndarray) -> np.ndarray:
        warning = fit_warning(model, training_noise, images, source)
        if warning:
            log.warning(warning)
        return denoise_array(model, images, device)

    if not source.exists():
        raise MissingFile(f"input {source} does not exist")
    check_target(source, target, overwrite)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"input folder {source} holds no .png or .jpg images")
        restored = restore(np.stack([read_image(p) for p in files]))
        for file, image in zip(files, restored):
            write_image(target / file.relative_to(source), image)
        return len(files)
    suffix = source.suffix.lower()
    if suffix == ".npy":
        if target.suffix.lower() != ".npy":
            raise InputError(f"output {target} must end in .npy for an .npy input")
        images, dtype = read_npy(source)
        restored = restore(images)
        buffer = io.BytesIO()
        np.save(buffer, np.clip(np.round(restored * 255.0), 0, 255).astype(np.uint8) if dtype == np.uint8 else restored.astype(dtype))
        write_atomic(target, buffer.getvalue())
        return len(images)
    if suffix in IMAGE_SUFFIXES:
        if target.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"output {target} must end in .png or .jpg for an image input")
        write_image(target, restore(read_image(source)[None])[0])
        return 1
    raise InputError(f"input {source}: unsupported type; give a .png/.jpg image, a folder of them, or a .npy array (N, 48, 48)")


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m denoise_core.denoise", description="Denoise 48x48 grayscale faces with a trained model.")
    parser.add_argument("--model", help=f"model file (default: the shipped {SHIPPED_MODEL.name})")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto, CUDA when present)")
    parser.add_argument("input", type=Path, help="a 48x48 .png/.jpg face (8- or 16-bit), a folder of them, or a .npy array (N, 48, 48) "
                                                  "of uint8 or of floats in [0, 1]")
    parser.add_argument("output", type=Path, help="where the restored faces go: an image path for an image, a folder for a folder, "
                                                   "a .npy path (same dtype) for a .npy")
    args = parser.parse_args(argv)
    setup_logging()

    def run() -> None:
        model_path = Path(args.model) if args.model else SHIPPED_MODEL
        if not model_path.exists():
            raise MissingFile(f"model {model_path} does not exist; pass --model RUN_DIR/model.pt or a study's best/model.pt")
        device = resolve_device(args.device)
        model, meta = load_model(model_path, device)
        count = denoise_path(model, args.input, args.output, args.overwrite, device, meta["config"]["noise"])
        print(f"denoised {count} face{'s' if count != 1 else ''} into {args.output}")

    run_cli(run, "denoise_core.denoise")


if __name__ == "__main__":
    main()
