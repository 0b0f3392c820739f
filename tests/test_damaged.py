"""Damaged files: each is one line naming the file, a damaged cache is rebuilt, and a full disk leaves nothing half-written."""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import logging
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from denoise_core import data
from denoise_core.data import DataError, load_fer2013, write_csv
from denoise_core.denoise import denoise_path, read_image, read_npy, write_image
from denoise_core.errors import DiskFull, InputError, UserError
from denoise_core.holdout import make_holdout, save_holdout
from results.score_cache import ScoreCache
from synthetic import Payload, smooth_faces, smooth_usage, tar_gz


@pytest.fixture(autouse=True)
def _isolated_default_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "default-cache"))


def csv_bytes() -> bytes:
    """Twelve smooth faces in FER2013's CSV layout."""
    lines = ["emotion,pixels,Usage"]
    for image, code in zip(smooth_faces(12), smooth_usage(6, 3, 3)):
        lines.append(f"0,{' '.join(map(str, image.reshape(-1).tolist()))},{data.USAGES[code]}")
    return ("\n".join(lines) + "\n").encode()


def one_line_naming(error: BaseException, path: Path) -> str:
    message = str(error)
    assert isinstance(error, UserError)
    assert str(path) in message and "\n" not in message, message
    return message


# ------------------------------------------------------------------------------------- dataset files


DAMAGED_SOURCES = {
    "truncated.csv.gz": lambda: gzip.compress(csv_bytes())[:3000],
    "plain-csv-named.csv.gz": csv_bytes,
    "corrupted.csv.gz": lambda: gzip.compress(csv_bytes())[:-8] + b"\0" * 8,
    "truncated.tar.gz": lambda: tar_gz(csv_bytes())[:3000],
    "plain-csv-named.tar.gz": csv_bytes,
    "empty.csv": lambda: b"",
    "empty.csv.gz": lambda: b"",
    "empty.tar.gz": lambda: b"",
    "nothing-inside.csv.gz": lambda: gzip.compress(b""),
}


@pytest.mark.parametrize("name", list(DAMAGED_SOURCES))
def test_a_damaged_dataset_file_is_one_data_error_naming_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(DAMAGED_SOURCES[name]())
    with pytest.raises(DataError) as caught:
        load_fer2013(path, cache_dir=tmp_path / "cache")
    message = one_line_naming(caught.value, path)
    assert "download it again" in message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_truncated_gzip_message_names_the_cause(tmp_path):
    path = tmp_path / "fer2013.csv.gz"
    path.write_bytes(gzip.compress(csv_bytes())[:3000])
    with pytest.raises(DataError, match=r"fer2013\.csv\.gz: is truncated or not gzip-compressed \(Compressed file ended"):
        load_fer2013(path, use_cache=False)


def image_folder_with(tmp_path: Path, name: str, content: bytes) -> tuple[Path, Path]:
    root = tmp_path / "faces"
    for split in ("train", "test"):
        folder = root / split / "happy"
        folder.mkdir(parents=True)
        Image.fromarray(smooth_faces(1)[0]).save(folder / "0.png")
    bad = root / "test" / "happy" / name
    bad.write_bytes(content)
    return root, bad


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


UNDECODABLE = {
    "garbage.png": lambda: b"\x89PNG\r\n\x1a\n not really a png",
    "truncated.png": lambda: png_bytes(smooth_faces(1, seed=4)[0])[:300],
    "empty.png": lambda: b"",
    "text.jpg": lambda: b"hello\n",
}


@pytest.mark.parametrize("name", list(UNDECODABLE))
def test_an_undecodable_image_in_an_image_folder_is_one_data_error_naming_it(tmp_path, name):
    root, bad = image_folder_with(tmp_path, name, UNDECODABLE[name]())
    with pytest.raises(DataError) as caught:
        load_fer2013(root, use_cache=False)
    assert "cannot be decoded as an image" in one_line_naming(caught.value, bad)


# ------------------------------------------------------------------------------------- denoise inputs


def saved_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def saved_npz(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, faces=array)
    return buffer.getvalue()


BAD_NPY = {
    "empty": (lambda marker: b"", "is empty"),
    "truncated": (lambda marker: saved_npy(smooth_faces(3))[:1000], "truncated"),
    "header-only": (lambda marker: saved_npy(smooth_faces(3))[:128], "truncated"),
    "objects": (lambda marker: saved_npy(np.array([Payload(marker)], dtype=object)), "Python objects"),
    "no-faces": (lambda marker: saved_npy(np.zeros((0, 48, 48), np.uint8)), "holds no faces"),
    "wrong-shape": (lambda marker: saved_npy(np.zeros((3, 32, 32), np.uint8)), "shaped (N, 48, 48)"),
    "one-face-2d": (lambda marker: saved_npy(np.zeros((48, 48), np.uint8)), "(1, 48, 48)"),
    "text": (lambda marker: b"0 1 2\n3 4 5\n", "not a .npy array"),
    "npz": (lambda marker: saved_npz(smooth_faces(2)), "not a .npy array"),
    "int64": (lambda marker: saved_npy(np.zeros((2, 48, 48), np.int64)), "dtype int64"),
    "nan": (lambda marker: saved_npy(np.full((2, 48, 48), np.nan, np.float32)), "in [0, 1]"),
}


@pytest.mark.parametrize("case", list(BAD_NPY))
def test_a_bad_npy_input_is_one_input_error_naming_it_and_runs_no_code(tmp_path, case):
    content, expected = BAD_NPY[case]
    marker = tmp_path / "payload-ran"
    path = tmp_path / f"{case}.npy"
    path.write_bytes(content(marker))
    with pytest.raises(InputError) as caught:
        read_npy(path)
    assert expected in one_line_naming(caught.value, path)
    assert not marker.exists()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_npy_inputs_need_at_least_one_face_and_one_face_reads(tmp_path, dtype):
    face = smooth_faces(1)
    stored = face if dtype == np.uint8 else (face / 255).astype(dtype)
    np.save(tmp_path / "none.npy", stored[:0])
    np.save(tmp_path / "one.npy", stored)
    with pytest.raises(InputError, match="holds no faces"):
        read_npy(tmp_path / "none.npy")
    images, read_dtype = read_npy(tmp_path / "one.npy")
    assert read_dtype == dtype and images.dtype == np.float32
    np.testing.assert_array_equal(np.round(images * 255).astype(np.uint8), face)


@pytest.mark.parametrize("name", list(UNDECODABLE))
def test_an_undecodable_input_image_is_one_input_error_naming_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(UNDECODABLE[name]())
    with pytest.raises(InputError) as caught:
        read_image(path)
    assert "cannot be decoded as an image" in one_line_naming(caught.value, path)


def test_a_16_bit_png_face_reads_like_its_8_bit_face(tmp_path):
    face = smooth_faces(1, seed=7)[0]
    Image.fromarray(face).save(tmp_path / "face8.png")
    Image.fromarray(face.astype(np.uint16) * 257).save(tmp_path / "face16.png")
    with Image.open(tmp_path / "face16.png") as image:
        assert image.mode.startswith("I")  # really 16-bit on disk
    assert np.array_equal(read_image(tmp_path / "face16.png"), read_image(tmp_path / "face8.png"))
    np.testing.assert_array_equal(np.round(read_image(tmp_path / "face16.png") * 255).astype(np.uint8), face)


def test_a_32_bit_float_image_is_refused_in_one_line(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(smooth_faces(1)[0].astype(np.float32)).save(path)
    with pytest.raises(InputError) as caught:
        read_image(path)
    assert "mode F" in one_line_naming(caught.value, path)


# ---------------------------------------------------------------------------------- baseline score cache


KEY = {"kind": "score", "name": "median3", "condition": "sp:0.1"}
VALUE = {"psnr": 30.5, "ssim": 0.9}


@pytest.mark.parametrize("content", [
    '{"key": {"kind": "score"}, "value": {"psnr": 3',  # truncated
    "\x00\xff garbage \x9c",
    "[1, 2]",  # valid JSON, not an entry
    '"text"',
    '{"key": {}}',  # no value
    '{"key": {}, "value": [1, 2]}',  # a value that is not scores
], ids=["truncated", "garbage", "list", "string", "no-value", "value-not-dict"])
def test_an_unreadable_score_cache_entry_is_a_miss_with_a_notice_and_is_rewritten(tmp_path, caplog, content):
    cache = ScoreCache(tmp_path / "scores")
    cache.put(KEY, VALUE)
    [entry] = (tmp_path / "scores").iterdir()
    entry.write_bytes(content.encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="results.score_cache"):
        assert cache.get(KEY) is None
    assert any(entry.name in record.getMessage() for record in caplog.records)
    cache.put(KEY, VALUE)
    assert cache.get(KEY) == VALUE
    assert [p.name for p in (tmp_path / "scores").iterdir()] == [entry.name]


# ---------------------------------------------------------------------------------- study directories


DAMAGED_STUDY_YAML = {
    "unclosed-mapping": "name: broken\nsearch: {lr: {loguniform: [1e-4, 1e-2]}\n",
    "tab-indented": "name: broken\ntrain:\n\tepochs: 3\n",
    "a-list": "- name: broken\n- metric: val_psnr\n",
}


@pytest.mark.parametrize("reader", ["results.study_dir", "study.dashboard"])
@pytest.mark.parametrize("content", list(DAMAGED_STUDY_YAML))
def test_a_damaged_study_yaml_is_one_input_error_naming_it(tmp_path, reader, content):
    from results.study_dir import read_study
    from study.dashboard import study_database

    (tmp_path / "study.yaml").write_text(DAMAGED_STUDY_YAML[content])
    (tmp_path / "trials.csv").write_text("trial_id,status\na,completed\n")
    with pytest.raises(InputError) as error:
        read_study(tmp_path) if reader == "results.study_dir" else study_database(str(tmp_path))
    one_line_naming(error.value, tmp_path / "study.yaml")


# ------------------------------------------------------------------------------------------ full disk


def fill_disk(monkeypatch) -> None:
    """From now on every ``open`` of a ``.partial`` file for writing gives a handle whose writes fail with ENOSPC."""

    class FullFile(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = builtins.open

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        if str(file).endswith(".partial") and ("w" in mode or "a" in mode):
            return FullFile(file, "w")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)


def parse_cache_writer(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    """A damaged parse cache entry is rewritten once the source is parsed: on a full disk that write fails."""
    source = tmp_path / "fer2013.csv"
    write_csv(source, smooth_faces(6), smooth_usage(2, 2, 2))
    target = tmp_path / "cache" / f"{source.name}-{data.source_key(source)}.npz"
    target.parent.mkdir()
    target.write_bytes(b"old, damaged cache entry")
    return target, lambda: load_fer2013(source, cache_dir=target.parent)


def holdout_writer(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    target = tmp_path / "holdout.npz"
    target.write_bytes(b"old hold-out")
    return target, lambda: save_holdout(make_holdout(smooth_faces(3), ("none",), seed=1), target)


def score_writer(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    cache = ScoreCache(tmp_path / "scores")
    cache.put(KEY, {"psnr": 1.0})
    [target] = (tmp_path / "scores").iterdir()
    return target, lambda: cache.put(KEY, VALUE)


def png_writer(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    target = tmp_path / "out.png"
    target.write_bytes(b"old image")
    return target, lambda: write_image(target, smooth_faces(1)[0] / 255.0)


def denoised_npy_writer(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    source, target = tmp_path / "faces.npy", tmp_path / "out.npy"
    np.save(source, smooth_faces(2))
    target.write_bytes(b"old output")
    return target, lambda: denoise_path(torch.nn.Identity(), source, target, overwrite=True)


WRITERS = [parse_cache_writer, holdout_writer, score_writer, png_writer, denoised_npy_writer]


@pytest.mark.parametrize("writer", WRITERS, ids=lambda writer: writer.__name__)
def test_a_full_disk_is_one_disk_full_line_and_leaves_the_old_file_and_no_partial(tmp_path, monkeypatch, writer):
    target, write = writer(tmp_path)
    before = target.read_bytes()
    files_before = sorted(tmp_path.rglob("*"))
    with monkeypatch.context() as patch:
        fill_disk(patch)
        with pytest.raises(DiskFull) as caught:
            write()
    message = str(caught.value)
    assert target.name in message and "no space left" in message and "\n" not in message
    assert re.search(r"which needs [\d.]+ (B|kB|MB) with [\d.]+ (B|kB|MB|GB) free\)", message), message  # the room it takes
    assert target.read_bytes() == before
    assert sorted(tmp_path.rglob("*")) == files_before  # no .partial left behind
    write()  # room again: the same write replaces the file whole
    assert target.read_bytes() != before and not list(tmp_path.rglob("*.partial"))


# ------------------------------------------------------------------------------------ read-only caches and outputs


def make_read_only(monkeypatch, folder: Path) -> None:
    """From now on creating a file or folder inside ``folder`` fails as on a read-only folder (permission denied):
    the tests run as root, whom chmod does not stop."""
    real_open, real_mkdir = builtins.open, Path.mkdir

    def refuse(path) -> None:
        if Path(path).absolute().is_relative_to(folder.absolute()):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    def open_read_only(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def mkdir_read_only(self, *args, **kwargs):
        if not self.is_dir():
            refuse(self)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_read_only)
    monkeypatch.setattr(Path, "mkdir", mkdir_read_only)


def test_a_read_only_data_cache_is_one_warning_and_the_faces_still_load(tmp_path, monkeypatch, caplog):
    source, cache = tmp_path / "fer2013.csv", tmp_path / "cache"
    write_csv(source, smooth_faces(6), smooth_usage(2, 2, 2))
    make_read_only(monkeypatch, cache)
    with caplog.at_level("WARNING"):
        faces = load_fer2013(source, cache_dir=cache)
    assert len(faces.images) == 6 and not cache.exists()
    [warning] = [record.getMessage() for record in caplog.records]
    assert f"cannot write {cache}" in warning and "permission denied; " in warning and "going on without the cache" in warning


def test_a_read_only_holdout_and_score_cache_are_each_one_warning(tmp_path, monkeypatch, caplog):
    from denoise_core.files import cache_writable
    from denoise_core.holdout import holdout_for

    make_read_only(monkeypatch, tmp_path)
    with caplog.at_level("WARNING"):
        holdout = holdout_for(smooth_faces(3), tmp_path / "cache", ("sp:0.2",), seed=1)
        writable = cache_writable(tmp_path / "scores", logging.getLogger("test"))
    assert holdout.noisy.shape == (1, 3, 48, 48) and not writable and not list(tmp_path.iterdir())
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [f"cannot write {tmp_path / 'cache'}", f"cannot write {tmp_path / 'scores'}"]


def test_a_read_only_run_directory_is_one_line(tmp_path, monkeypatch, capsys):
    from denoise_core.train import main as train_main

    source = tmp_path / "fer2013.csv"
    write_csv(source, smooth_faces(40), smooth_usage(24, 8, 8))
    make_read_only(monkeypatch, tmp_path / "locked")
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", str(source), "--out", str(tmp_path / "locked" / "run"), "--epochs", "1", "--model-base-width", "4"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and "Traceback" not in err
    assert re.search(r"locked/run: permission denied; choose a writable location", err), err
