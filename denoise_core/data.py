"""FER2013 faces as uint8 arrays: fast parsing of every common distribution form, a cache, and splits.

Labels are never used: the faces are restoration targets. The parser is a single compiled pass over
the CSV bytes (numba), because the naive pandas + ``str.split`` route spends ~10 s on 82 million
integers; the result is cached as ``.npz`` keyed by the source's size, mtime and a hash of its head.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numba
import numpy as np

from denoise_core.errors import UserError, describe
from denoise_core.files import NPZ_ERRORS, read_npz, write_cache

if TYPE_CHECKING:
    import PIL.Image

log = logging.getLogger(__name__)

SIDE = 48
PIXELS = SIDE * SIDE
USAGES = ("Training", "PublicTest", "PrivateTest")
TRAINING, PUBLIC_TEST, PRIVATE_TEST = 0, 1, 2
ENV_VAR = "FER2013_PATH"
CACHE_ENV_VAR = "FACESTUDY_CACHE"
DOWNLOAD_HINT = "https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge/data"
CACHE_FORMAT = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # "I": how Pillow before 10 opened 16-bit PNGs


class DataError(UserError, ValueError):
    """The dataset exists but its content is not valid FER2013; the message names the file or the line."""


class DataNotFound(UserError, FileNotFoundError):
    """No dataset path was given, or the given path does not exist."""


@dataclass(frozen=True)
class Faces:
    """All usable faces of one source, in file order, constant images removed."""

    images: np.ndarray  # uint8, (N, 48, 48)
    usage: np.ndarray  # int8, (N,), 0 Training / 1 PublicTest / 2 PrivateTest
    source: str
    dropped_constant: int


@dataclass(frozen=True)
class Splits:
    """Training trains, PublicTest validates, PrivateTest tests and does nothing else."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_in_training: np.ndarray  # bool, (len(test),): exact duplicates of a Training face
    val_in_training: np.ndarray  # bool, (len(val),): exact duplicates of a Training face

    @property
    def test_unique(self) -> np.ndarray:
        """Test faces that do not also occur in Training: what honest test metrics use."""
        return self.test[~self.test_in_training]

    @property
    def val_unique(self) -> np.ndarray:
        """Validation faces that do not also occur in Training: early stopping and model selection must not
        score faces the model trained on."""
        return self.val[~self.val_in_training]

    def validation(self, unique: bool) -> np.ndarray:
        """The validation faces a run uses: ``val_unique``, or every PublicTest face (``unique=False``), as the
        recipes trained before the copies of Training faces were removed from validation need to replay."""
        return self.val_unique if unique else self.val


def resolve_data_path(cli_value: str | os.PathLike | None) -> Path:
    """The dataset path from ``--data`` or ``$FER2013_PATH``, or a one-line error saying how to set it."""
    value = cli_value if cli_value not in (None, "") else os.environ.get(ENV_VAR)
    if not value:
        raise DataNotFound(
            f"FER2013 not found: pass --data PATH or set {ENV_VAR} to fer2013.csv(.gz), fer2013.tar.gz, "
            f"icml_face_data.csv or an image folder (download: {DOWNLOAD_HINT})"
        )
    path = Path(value).expanduser()
    if not path.exists():
        raise DataNotFound(
            f"FER2013 not found at {path} (from {'--data' if cli_value else ENV_VAR}): point --data or "
            f"{ENV_VAR} at fer2013.csv(.gz), fer2013.tar.gz, icml_face_data.csv or an image folder "
            f"(download: {DOWNLOAD_HINT})"
        )
    refuse_stream(path)
    return path


def refuse_stream(path: Path) -> None:
    """A pipe, FIFO or device as the dataset is refused at once: reading one for the cache key would wait forever."""
    if not path.is_dir() and not path.is_file():
        raise DataError(f"{path} is not a regular file (a pipe, FIFO or device): FER2013 is read twice, for its cache key and its "
                        "faces; save it to a file and pass that path with --data")


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "facestudy")


def load_fer2013(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> Faces:
    """Read FER2013 from a .csv, .csv.gz, Kaggle .tar.gz, icml_face_data.csv or image folder, with a cache."""
    path = Path(path)
    if not path.exists():
        raise DataNotFound(f"FER2013 not found at {path}: point --data or {ENV_VAR} at it (download: {DOWNLOAD_HINT})")
    refuse_stream(path)
    cache_file = None
    if use_cache:
        cache_file = Path(cache_dir or default_cache_dir()) / f"{path.name}-{source_key(path)}.npz"
        start = time.perf_counter()
        cached = _read_cache(cache_file) if cache_file.exists() else None
        if cached is not None:
            images, usage = cached
            log.info("loaded %d faces from cache %s in %.2f s", len(images), cache_file, time.perf_counter() - start)
            return _drop_constant(images, usage, str(path))
    start = time.perf_counter()
    images, usage = _read_source(path)
    log.info("parsed %d faces from %s in %.2f s", len(images), path, time.perf_counter() - start)
    if cache_file is not None:
        _write_cache(cache_file, images, usage)
    return _drop_constant(images, usage, str(path))


def source_key(path: Path) -> str:
    """Identity of a source: size, mtime and a hash of its first MiB (a folder: its file listing)."""
    digest = hashlib.sha256(f"v{CACHE_FORMAT}|{path.resolve()}".encode())
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"|{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    else:
        stat = path.stat()
        digest.update(f"|{stat.st_size}|{stat.st_mtime_ns}|".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:20]


def split_faces(faces: Faces) -> Splits:
    """Split by Usage and flag validation and test faces that are exact copies of a Training face."""
    train = faces.images[faces.usage == TRAINING]
    val = faces.images[faces.usage == PUBLIC_TEST]
    test = faces.images[faces.usage == PRIVATE_TEST]
    training_bytes = {image.tobytes() for image in train}
    val_in_training, test_in_training = (in_faces(part, training_bytes) for part in (val, test))
    log.info(
        "splits: %d train, %d val, %d test (%d val and %d test faces also occur in Training and are left out of "
        "validation and test metrics)", len(train), len(val), len(test), int(val_in_training.sum()), int(test_in_training.sum()),
    )
    return Splits(train=train, val=val, test=test, test_in_training=test_in_training, val_in_training=val_in_training)


def in_faces(images: np.ndarray, known: set[bytes]) -> np.ndarray:
    """Which of ``images`` are byte-for-byte one of the ``known`` faces (bool, (len(images),))."""
    return np.fromiter((image.tobytes() in known for image in images), dtype=bool, count=len(images))


def load_splits(path: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None) -> Splits:
    """``resolve_data_path`` + ``load_fer2013`` + ``split_faces``: what every CLI calls; faces without Training rows are refused."""
    faces = load_fer2013(resolve_data_path(path), cache_dir=cache_dir)
    if not len(faces.images):
        raise DataError(f"{faces.source}: holds no faces (a header only, or only blank faces); download it again ({DOWNLOAD_HINT})")
    if not (faces.usage == TRAINING).any():
        found = ", ".join(f"{int((faces.usage == code).sum())} {name}" for code, name in enumerate(USAGES))
        raise DataError(f"{faces.source}: holds no Training faces ({found}); training needs rows whose Usage is Training")
    return split_faces(faces)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 faces to float32 in [0, 1], the range every metric uses (data_range 1.0)."""
    return images.astype(np.float32) / np.float32(255.0)


def parse_csv_bytes(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse FER2013 CSV bytes into (uint8 images (N, 48, 48), int8 usage codes)."""
    header_end = raw.find(b"\n")
    header_end = len(raw) if header_end < 0 else header_end
    columns = [c.strip().strip('"').lower() for c in raw[:header_end].decode("utf-8", "replace").strip().split(",")]
    for required in ("pixels", "usage"):
        if required not in columns:
            raise DataError(f"line 1: missing column '{required}' (header has {', '.join(columns)}); expected emotion,pixels,Usage")
    buf = np.frombuffer(raw, dtype=np.uint8)
    capacity = len(raw) // (2 * PIXELS - 1) + 1
    images = np.empty((capacity, PIXELS), dtype=np.uint8)
    usage_span = np.empty((capacity, 2), dtype=np.int64)
    status = np.zeros(4, dtype=np.int64)
    rows = _parse_rows(buf, header_end + 1, len(columns), columns.index("pixels"), columns.index("usage"), images, usage_span, status)
    if status[0] != 0:
        raise DataError(_describe_error(status))
    codes = {name.encode(): index for index, name in enumerate(USAGES)}
    usage = np.empty(rows, dtype=np.int8)
    for row in range(rows):
        text = raw[usage_span[row, 0]:usage_span[row, 1]]
        code = codes.get(text)
        if code is None:
            line = raw.count(b"\n", 0, int(usage_span[row, 0])) + 1
            raise DataError(f"line {line}: unknown Usage '{text.decode('utf-8', 'replace')}'; expected one of {', '.join(USAGES)}")
        usage[row] = code
    return images[:rows].reshape(rows, SIDE, SIDE), usage


_ERRORS = {
    1: "expected {expected} comma-separated columns, found {found}",
    2: "expected 2304 pixel values, found {found}",
    3: "pixel value {found} is outside 0..255",
    4: "pixel values must be integers 0..255, found character {char!r}",
}


def _describe_error(status: np.ndarray) -> str:
    code, line, found, expected = (int(v) for v in status)
    return f"line {line}: " + _ERRORS[code].format(found=found, expected=expected, char=chr(found) if code == 4 else "")


@numba.njit(cache=True, nogil=True)
def _parse_rows(buf, pos, ncols, pix_col, usage_col, images, usage_span, status):  # pragma: no cover - compiled
    """One pass over the bytes: fields split on commas, pixels parsed as integers, errors with line numbers."""
    n = buf.shape[0]
    row = 0
    line = 2
    i = pos
    while i < n:
        col = 0
        content = False
        while True:
            if col == pix_col:
                count = 0
                value = 0
                digits = 0
                while True:
                    c = buf[i] if i < n else 10  # the end of the bytes ends the field like a newline
                    if 48 <= c <= 57:
                        if value < 100000:
                            value = value * 10 + (c - 48)
                        digits += 1
                        i += 1
                        continue
                    if digits:  # any other byte ends a number
                        if value > 255:
                            status[0] = 3
                            status[1] = line
                            status[2] = value
                            return row
                        if count < 2304:
                            images[row, count] = value
                        count += 1
                        value = 0
                        digits = 0
                    if c == 44 or c == 10 or c == 13:
                        break
                    if c != 32 and c != 34 and c != 9:
                        status[0] = 4
                        status[1] = line
                        status[2] = c
                        return row
                    i += 1
                content = content or count > 0
                if count != 2304 and (count > 0 or col > 0 or (i < n and buf[i] == 44)):
                    status[0] = 2
                    status[1] = line
                    status[2] = count
                    return row
            else:
                a = i
                while i < n and buf[i] != 44 and buf[i] != 10 and buf[i] != 13:
                    i += 1
                b = i
                while a < b and (buf[a] == 32 or buf[a] == 34):
                    a += 1
                while b > a and (buf[b - 1] == 32 or buf[b - 1] == 34):
                    b -= 1
                content = content or b > a
                if col == usage_col:
                    usage_span[row, 0] = a
                    usage_span[row, 1] = b
            col += 1
            if i < n and buf[i] == 44:
                i += 1
                continue
            break
        while i < n and buf[i] != 10:
            i += 1
        i += 1
        if content or col > 1:
            if col != ncols:
                status[0] = 1
                status[1] = line
                status[2] = col
                status[3] = ncols
                return row
            row += 1
        line += 1
    return row


def _read_source(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.is_dir():
        return _read_image_folder(path)
    if not path.name.lower().endswith((".tar.gz", ".tgz", ".tar", ".gz", ".csv")):
        raise DataError(f"{path}: unsupported file type; expected .csv, .csv.gz, .tar.gz or a folder with train/ and test/")
    return parse_csv_bytes(_csv_bytes(path))


def _csv_bytes(path: Path) -> bytes:
    """The CSV bytes of a source file; an empty, truncated or mislabelled download is one DataError naming the file."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes): download it again ({DOWNLOAD_HINT})")
    name = path.name.lower()
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            raw = _csv_from_tar(path)
        elif name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except tarfile.ReadError as error:
        raise DataError(f"{path}: is truncated or not a .tar.gz archive ({describe(error)}): download it again ({DOWNLOAD_HINT})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: is truncated or not gzip-compressed ({describe(error)}): download it again ({DOWNLOAD_HINT})") from None
    if not raw.strip():
        raise DataError(f"{path}: holds no CSV text (empty once unpacked): download it again ({DOWNLOAD_HINT})")
    refuse_other_format(path, raw)
    return raw


def refuse_other_format(path: Path, raw: bytes) -> None:
    """Bytes that are not CSV text but a known other form, named for what they are and how to fix the file."""
    gzipped = path.name.lower().endswith(".gz")
    if raw[257:262] == b"ustar":
        raise DataError(f"{path} is a tar archive; name it .tar.gz (or .tar) so that its fer2013.csv is read from inside it")
    if raw[:2] == b"\x1f\x8b":
        if gzipped:
            raise DataError(f"{path} is gzip inside gzip (compressed twice); decompress it once (gunzip) and keep the .csv.gz")
        raise DataError(f"{path} is gzip-compressed; name it .csv.gz")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw[:64].count(b"\x00") >= 16:  # a BOM, or every other byte zero
        raise DataError(f"{path} is UTF-16 text; save it as UTF-8")


def _csv_from_tar(path: Path) -> bytes:
    with tarfile.open(path) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".csv")]
        preferred = [m for m in members if m.name.endswith("fer2013/fer2013.csv")] or [
            m for m in members if Path(m.name).name in ("fer2013.csv", "icml_face_data.csv")
        ]
        if not preferred:
            raise DataError(f"{path}: archive holds no fer2013/fer2013.csv (found {[m.name for m in members]})")
        handle = archive.extractfile(preferred[0])
        assert handle is not None
        return handle.read()


def _read_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kaggle's image export: train/<class>/*.png is Training; test/ is split into alternate val/test halves.

    Files are ordered by their path relative to the split folder; in ``test/`` the even positions become
    PublicTest (validation) and the odd ones PrivateTest (test), so the split is the same on every machine.
    """
    from PIL import Image

    parts: list[tuple[list[Path], list[int]]] = []
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{root}: image folder needs train/ and test/ subfolders (missing {split}/)")
        files = sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.relative_to(folder).as_posix())
        if not files:
            raise DataError(f"{folder}: no .png or .jpg faces found")
        codes = [TRAINING] * len(files) if split == "train" else [PUBLIC_TEST if i % 2 == 0 else PRIVATE_TEST for i in range(len(files))]
        parts.append((files, codes))
    files = [f for group, _ in parts for f in group]
    usage = np.array([c for _, group in parts for c in group], dtype=np.int8)
    images = np.empty((len(files), SIDE, SIDE), dtype=np.uint8)
    for index, file in enumerate(files):
        images[index] = read_face(file)
    return images, usage


def read_face(path: Path, error: type[UserError] = DataError) -> np.ndarray:
    """One 48x48 face image as uint8 gray levels (16-bit images scaled by their depth); a file that is not one is ``error``
    in one line naming it: another size, an undecodable file, a mode without gray levels."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.size != (SIDE, SIDE):
                raise error(f"{path}: image is {image.size[0]}x{image.size[1]}; faces are 48x48 (resize or crop it)")
            mode, pixels = image.mode, gray_pixels(image)
    except (OSError, Image.DecompressionBombError) as caught:
        raise error(f"{path}: cannot be decoded as an image ({describe(caught)}); replace it with a .png or .jpg face") from None
    if pixels is None:
        raise error(f"{path}: image mode {mode} has no gray levels to read; save it as 8- or 16-bit grayscale or as RGB")
    return pixels


def gray_pixels(image: PIL.Image.Image) -> np.ndarray | None:
    """An opened image as uint8 gray levels, or None when its mode has no such reading (32-bit values, floats).

    ``convert("L")`` clips 16-bit values (0..65535) to 255 and turns a 16-bit face white, so they are scaled
    by their depth instead: value / 257, rounded. Other modes (RGB, LA, P, ...) go through ``convert("L")``.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image).astype(np.int64)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            return None
        return ((pixels + 128) // 257).astype(np.uint8)
    if image.mode == "F":
        return None
    try:
        return np.asarray(image.convert("L"))
    except ValueError:
        return None


def _read_cache(cache_file: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached faces, or None after a warning when the entry is damaged: the source is then parsed and cached again."""
    try:
        stored = read_npz(cache_file, ("images", "usage"))
    except NPZ_ERRORS as error:
        problem = describe(error)
    else:
        images, usage = stored["images"], stored["usage"]
        if _is_faces(images, usage):
            return images, usage
        problem = f"unexpected arrays: images {images.dtype} {images.shape}, usage {usage.dtype} {usage.shape}"
    log.warning("parse cache %s is damaged (%s); parsing the source again and rewriting it", cache_file, problem)
    return None


def _is_faces(images: np.ndarray, usage: np.ndarray) -> bool:
    shaped = images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (SIDE, SIDE)
    labelled = usage.dtype == np.int8 and usage.shape == (len(images),)
    return shaped and labelled and bool(np.isin(usage, (TRAINING, PUBLIC_TEST, PRIVATE_TEST)).all())


def _write_cache(cache_file: Path, images: np.ndarray, usage: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, images=images, usage=usage)
    write_cache(cache_file, buffer.getvalue(), log)


def _drop_constant(images: np.ndarray, usage: np.ndarray, source: str) -> Faces:
    flat = images.reshape(len(images), PIXELS)
    constant = flat.min(axis=1) == flat.max(axis=1)
    dropped = int(constant.sum())
    if dropped:
        log.info("dropped %d constant (blank) faces from %s", dropped, source)
    return Faces(images=images[~constant], usage=usage[~constant], source=source, dropped_constant=dropped)


def write_csv(path: str | os.PathLike, images: np.ndarray, usage: np.ndarray, columns: tuple[str, str, str] = ("emotion", "pixels", "Usage")) -> None:
    """Write faces in FER2013's CSV layout (emotion 0); used to build fixtures and data slices."""
    lines = [",".join(columns)]
    for image, code in zip(images, usage):
        fields = {"emotion": "0", "pixels": " ".join(map(str, image.reshape(-1).tolist())), "usage": USAGES[code]}
        lines.append(",".join(fields[c.strip().lower()] for c in columns))
    data = ("\n".join(lines) + "\n").encode()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        Path(path).write_bytes(data)


def read_csv_head(path: str | os.PathLike, per_usage: int) -> bytes:
    """The header plus the first ``per_usage`` rows of each Usage, streamed: a small real slice for tests."""
    counts = dict.fromkeys(USAGES, 0)
    opener = gzip.open if str(path).endswith(".gz") else open
    out = io.BytesIO()
    with opener(path, "rb") as handle:
        out.write(handle.readline())
        for line in handle:
            usage = line.rstrip(b"\r\n").rsplit(b",", 1)[-1].decode()
            if counts.get(usage, per_usage) < per_usage:
                counts[usage] += 1
                out.write(line)
            if all(v >= per_usage for v in counts.values()):
                break
    return out.getvalue()
