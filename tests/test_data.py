"""Specification of ``denoise_core.data``: every input form, every bad-data message, the cache and the splits."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from denoise_core import data
from denoise_core.errors import UserError
from denoise_core.data import (
    DOWNLOAD_HINT,
    PRIVATE_TEST,
    PUBLIC_TEST,
    TRAINING,
    USAGES,
    DataError,
    DataNotFound,
    Faces,
    load_fer2013,
    load_splits,
    parse_csv_bytes,
    read_csv_head,
    resolve_data_path,
    split_faces,
    to_float,
    write_csv,
)

T, V, P = TRAINING, PUBLIC_TEST, PRIVATE_TEST
USAGE_PATTERN = np.array([T, V, P, T, T, P, V, T, P, T], dtype=np.int8)


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _isolated_default_cache(tmp_path, monkeypatch):
    """Even a load that forgets ``cache_dir`` must never write to the user's home cache."""
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "default-cache"))


def random_faces(seed: int, n: int, low: int = 0, high: int = 256) -> np.ndarray:
    """``n`` random, non-constant uint8 48x48 faces."""
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, size=(n, 48, 48), dtype=np.uint8)


@pytest.fixture
def faces() -> tuple[np.ndarray, np.ndarray]:
    """Ten random faces with mixed Usage (5 Training, 2 PublicTest, 3 PrivateTest)."""
    return random_faces(1234, len(USAGE_PATTERN)), USAGE_PATTERN.copy()


def pixels_text(image: np.ndarray) -> str:
    return " ".join(str(v) for v in image.reshape(-1).tolist())


def csv_text(images, usage, newline: str = "\n") -> str:
    """The standard ``emotion,pixels,Usage`` layout written by hand (independent of ``write_csv``)."""
    lines = ["emotion,pixels,Usage"]
    lines += [f"{i % 7},{pixels_text(image)},{USAGES[code]}" for i, (image, code) in enumerate(zip(images, usage))]
    return newline.join(lines) + newline


def valid_row(seed: int = 0, usage: str = "Training") -> str:
    return f"0,{pixels_text(random_faces(seed, 1)[0])},{usage}"


def row_with_pixels(values: list[str], usage: str = "Training") -> str:
    return f"0,{' '.join(values)},{usage}"


def parse_error(text: str) -> str:
    with pytest.raises(DataError) as caught:
        parse_csv_bytes(text.encode())
    return str(caught.value)


def assert_faces_equal(loaded: Faces, images: np.ndarray, usage: np.ndarray) -> None:
    assert loaded.images.dtype == np.uint8
    assert loaded.images.shape == (len(images), 48, 48)
    assert loaded.usage.dtype == np.int8
    np.testing.assert_array_equal(loaded.images, images)
    np.testing.assert_array_equal(loaded.usage, usage)
    assert loaded.dropped_constant == 0


def save_png(path: Path, image: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGB":
        Image.fromarray(np.repeat(image[:, :, None], 3, axis=2), mode="RGB").save(path)
    else:
        Image.fromarray(image, mode="L").save(path)


# ------------------------------------------------------------------------------------------ input forms


def test_load_reads_plain_csv(tmp_path, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    path.write_text(csv_text(images, usage))
    loaded = load_fer2013(path, cache_dir=tmp_path / "cache")
    assert_faces_equal(loaded, images, usage)
    assert loaded.source == str(path)


def test_write_csv_round_trips_through_load(tmp_path, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    write_csv(path, images, usage)
    expected_lines = ["emotion,pixels,Usage"] + [
        f"0,{pixels_text(image)},{USAGES[code]}" for image, code in zip(images, usage)
    ]
    assert path.read_text() == "\n".join(expected_lines) + "\n"
    assert_faces_equal(load_fer2013(path, use_cache=False), images, usage)


def test_load_reads_gzipped_csv(tmp_path, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv.gz"
    write_csv(path, images, usage)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # really gzip
    assert_faces_equal(load_fer2013(path, cache_dir=tmp_path / "cache"), images, usage)


def test_load_reads_kaggle_tar_gz(tmp_path, faces):
    images, usage = faces
    csv_bytes = csv_text(images, usage).encode()
    decoy = csv_text(random_faces(99, 2), np.array([T, T], dtype=np.int8)).encode()
    path = tmp_path / "fer2013.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in (
            ("fer2013/README", b"readme\n"),
            ("fer2013/other.csv", decoy),  # a csv that is not fer2013.csv must not be picked
            ("fer2013/fer2013.bib", b"@misc{}\n"),
            ("fer2013/fer2013.csv", csv_bytes),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    assert_faces_equal(load_fer2013(path, cache_dir=tmp_path / "cache"), images, usage)


def test_tar_without_fer2013_csv_raises_data_error(tmp_path):
    path = tmp_path / "fer2013.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("fer2013/README")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"hi\n"))
    with pytest.raises(DataError, match="archive holds no fer2013/fer2013.csv"):
        load_fer2013(path, use_cache=False)


@pytest.mark.parametrize("separator", [", ", ","], ids=["spaced-rows", "tight-rows"])
def test_load_reads_icml_face_data_with_spaced_header(tmp_path, faces, separator):
    images, usage = faces
    lines = ["emotion, Usage, pixels"]
    lines += [separator.join(["0", USAGES[code], pixels_text(image)]) for image, code in zip(images, usage)]
    path = tmp_path / "icml_face_data.csv"
    path.write_text("\n".join(lines) + "\n")
    assert path.read_text().splitlines()[1].startswith(f"0{separator}Training{separator}")
    assert_faces_equal(load_fer2013(path, cache_dir=tmp_path / "cache"), images, usage)


def test_write_csv_with_icml_column_order_round_trips(tmp_path, faces):
    images, usage = faces
    path = tmp_path / "icml_face_data.csv"
    write_csv(path, images, usage, columns=("emotion", " Usage", " pixels"))
    assert path.read_text().splitlines()[0] == "emotion, Usage, pixels"
    assert_faces_equal(load_fer2013(path, use_cache=False), images, usage)


def test_load_reads_crlf_line_endings(tmp_path, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    path.write_bytes(csv_text(images, usage, newline="\r\n").encode())
    assert path.read_bytes().count(b"\r\n") == len(images) + 1
    assert_faces_equal(load_fer2013(path, cache_dir=tmp_path / "cache"), images, usage)


@pytest.mark.parametrize("tail", ["\n", "\n\n", "\r\n", "   \n"], ids=["blank", "two-blank", "crlf-blank", "spaces"])
def test_load_ignores_trailing_blank_line(tmp_path, faces, tail):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    path.write_text(csv_text(images, usage) + tail)
    assert_faces_equal(load_fer2013(path, use_cache=False), images, usage)


def test_load_reads_csv_without_final_newline(tmp_path, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    path.write_text(csv_text(images, usage).rstrip("\n"))
    assert_faces_equal(load_fer2013(path, use_cache=False), images, usage)


def test_load_reads_quoted_header_and_fields(tmp_path, faces):
    images, usage = faces
    lines = ['"emotion","pixels","Usage"']
    lines += [f'0,"{pixels_text(image)}","{USAGES[code]}"' for image, code in zip(images, usage)]
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(lines) + "\n")
    assert_faces_equal(load_fer2013(path, use_cache=False), images, usage)


def test_header_only_csv_gives_zero_faces(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n")
    loaded = load_fer2013(path, use_cache=False)
    assert loaded.images.shape == (0, 48, 48)
    assert loaded.usage.shape == (0,)
    assert loaded.dropped_constant == 0


def image_folder(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A Kaggle-style image export plus the faces and usage codes it must load as, written out by hand."""
    root = tmp_path / "fer2013-images"
    pool = random_faces(77, 9)
    # train/: ordered by relative path -> angry/im10.png, angry/im9.png, happy/IM3.PNG, happy/im0.png
    train = {
        "happy/im0.png": pool[0],
        "angry/im9.png": pool[1],
        "angry/im10.png": pool[2],
        "happy/IM3.PNG": pool[3],  # upper-case suffix still counts
    }
    # test/: ordered by relative path -> angry/im1.png, angry/im10.png, angry/im2.png, sad/im0.png, surprise/a.png
    test = {
        "sad/im0.png": pool[4],
        "angry/im2.png": pool[5],
        "angry/im10.png": pool[6],
        "surprise/a.png": pool[7],
        "angry/im1.png": pool[8],
    }
    for relative, image in train.items():
        save_png(root / "train" / relative, image, mode="RGB" if relative == "angry/im9.png" else "L")
    for relative, image in test.items():
        save_png(root / "test" / relative, image)
    (root / "train" / "notes.txt").write_text("not a face\n")
    (root / "test" / "angry" / ".DS_Store").write_bytes(b"\0\1")
    expected_images = np.stack([
        pool[2], pool[1], pool[3], pool[0],  # train, sorted
        pool[8],  # test/angry/im1.png    position 0 -> PublicTest
        pool[6],  # test/angry/im10.png   position 1 -> PrivateTest
        pool[5],  # test/angry/im2.png    position 2 -> PublicTest
        pool[4],  # test/sad/im0.png      position 3 -> PrivateTest
        pool[7],  # test/surprise/a.png   position 4 -> PublicTest
    ])
    expected_usage = np.array([T, T, T, T, V, P, V, P, V], dtype=np.int8)
    return root, expected_images, expected_usage


def test_load_reads_image_folder_train_is_training_and_test_alternates_public_private(tmp_path):
    root, images, usage = image_folder(tmp_path)
    loaded = load_fer2013(root, cache_dir=tmp_path / "cache")
    assert_faces_equal(loaded, images, usage)
    assert loaded.source == str(root)


def test_image_folder_reads_a_16_bit_png_face_like_its_8_bit_face(tmp_path):
    root, images, usage = image_folder(tmp_path)
    sixteen_bit = root / "train" / "happy" / "im0.png"  # the fourth Training face
    Image.fromarray(images[3].astype(np.uint16) * 257).save(sixteen_bit)
    with Image.open(sixteen_bit) as image:
        assert image.mode.startswith("I")  # really 16-bit on disk
    assert_faces_equal(load_fer2013(root, use_cache=False), images, usage)


def sixteen_bit_image(face: np.ndarray, mode: str) -> Image.Image:
    """The face scaled to 16 bits (value * 257) in one of the modes Pillow gives 16-bit grayscale images."""
    wide = face.astype(np.uint16) * 257
    if mode == "I;16B":
        return Image.frombytes(mode, face.shape[::-1], wide.astype(">u2").tobytes())
    if mode == "I":
        return Image.fromarray(wide.astype(np.int32))
    return Image.fromarray(wide)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "L", "RGB", "LA", "P"])
def test_gray_pixels_scales_16_bit_modes_and_converts_8_bit_ones(mode):
    face = random_faces(21, 1)[0]
    if mode.startswith("I"):
        image = sixteen_bit_image(face, mode)
    else:
        image = Image.fromarray(face).convert(mode)
    assert image.mode == mode
    pixels = data.gray_pixels(image)
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, face)


def test_gray_pixels_rounds_16_bit_values_to_the_nearest_8_bit_level():
    values = np.array([[0, 128, 129, 257, 385, 386, 65535]], dtype=np.uint16)
    assert data.gray_pixels(Image.fromarray(values)).tolist() == [[0, 0, 1, 1, 1, 2, 255]]


@pytest.mark.parametrize("image", [
    Image.fromarray(np.full((2, 2), 0.5, np.float32)),
    Image.fromarray(np.array([[0, 70000]], np.int32)),
], ids=["float", "32-bit"])
def test_gray_pixels_refuses_modes_it_cannot_read_as_gray_levels(image):
    assert data.gray_pixels(image) is None


def test_image_folder_with_non_48x48_image_names_the_file(tmp_path):
    root, _, _ = image_folder(tmp_path)
    bad = root / "test" / "happy" / "big.png"
    save_png(bad, np.full((40, 48), 7, dtype=np.uint8))
    with pytest.raises(DataError) as caught:
        load_fer2013(root, use_cache=False)
    assert str(caught.value) == f"{bad}: image is 48x40; faces are 48x48 (resize or crop it)"


@pytest.mark.parametrize(("present", "missing"), [("train", "test"), ("test", "train")])
def test_image_folder_without_one_split_folder_raises_data_error(tmp_path, present, missing):
    root = tmp_path / "faces"
    save_png(root / present / "happy" / "im0.png", random_faces(5, 1)[0])
    with pytest.raises(DataError) as caught:
        load_fer2013(root, use_cache=False)
    assert str(caught.value) == f"{root}: image folder needs train/ and test/ subfolders (missing {missing}/)"


def test_image_folder_with_empty_split_raises_data_error(tmp_path):
    root = tmp_path / "faces"
    save_png(root / "train" / "happy" / "im0.png", random_faces(5, 1)[0])
    (root / "test" / "happy").mkdir(parents=True)
    with pytest.raises(DataError) as caught:
        load_fer2013(root, use_cache=False)
    assert str(caught.value) == f"{root / 'test'}: no .png or .jpg faces found"


@pytest.mark.parametrize("name", ["fer2013.json", "fer2013.npz", "fer2013"])
def test_unsupported_file_extension_raises_data_error(tmp_path, name):
    path = tmp_path / name
    path.write_text("emotion,pixels,Usage\n")
    with pytest.raises(DataError) as caught:
        load_fer2013(path, cache_dir=tmp_path / "cache")
    assert str(caught.value).startswith(f"{path}: unsupported file type; expected .csv, .csv.gz, .tar.gz")


def test_load_of_missing_path_raises_data_not_found(tmp_path):
    missing = tmp_path / "nowhere" / "fer2013.csv"
    with pytest.raises(DataNotFound) as caught:
        load_fer2013(missing, cache_dir=tmp_path / "cache")
    assert str(missing) in str(caught.value)
    assert not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------------------- bad data


def test_wrong_pixel_count_names_the_line():
    short = random_faces(3, 1)[0].reshape(-1)[:-1].astype(str).tolist()
    text = "\n".join(["emotion,pixels,Usage", valid_row(1), row_with_pixels(short), valid_row(2)]) + "\n"
    assert parse_error(text) == "line 3: expected 2304 pixel values, found 2303"


def test_too_many_pixels_names_the_line_and_count():
    long = (["7"] * 2305)
    text = "\n".join(["emotion,pixels,Usage", valid_row(1), valid_row(2), row_with_pixels(long)]) + "\n"
    assert parse_error(text) == "line 4: expected 2304 pixel values, found 2305"


def test_empty_pixel_field_names_the_line():
    text = "emotion,pixels,Usage\n" + valid_row(1) + "\n0,,Training\n"
    assert parse_error(text) == "line 3: expected 2304 pixel values, found 0"


def test_empty_pixel_field_in_first_column_names_the_line():
    text = f"pixels,Usage\n{pixels_text(random_faces(1, 1)[0])},Training\n,PublicTest\n"
    assert parse_error(text) == "line 3: expected 2304 pixel values, found 0"


@pytest.mark.parametrize("value", [256, 300, 1000, 99999])
def test_pixel_value_outside_0_255_names_the_line_and_value(value):
    values = ["1"] * 2304
    values[1000] = str(value)
    text = "\n".join(["emotion,pixels,Usage", valid_row(1), valid_row(2), valid_row(3), row_with_pixels(values)]) + "\n"
    assert parse_error(text) == f"line 5: pixel value {value} is outside 0..255"


def test_pixel_value_outside_range_as_last_value_names_the_line():
    values = ["1"] * 2303 + ["256"]
    text = "emotion,pixels,Usage\n" + row_with_pixels(values) + "\n"
    assert parse_error(text) == "line 2: pixel value 256 is outside 0..255"


@pytest.mark.parametrize(
    ("token", "char"),
    [("12.5", "."), ("abc", "a"), ("-3", "-"), ("1e3", "e")],
    ids=["decimal", "letters", "negative", "exponent"],
)
def test_non_integer_pixel_names_the_line_and_character(token, char):
    values = ["5"] * 2304
    values[17] = token
    text = "\n".join(["emotion,pixels,Usage", valid_row(1), row_with_pixels(values), valid_row(2)]) + "\n"
    assert parse_error(text) == f"line 3: pixel values must be integers 0..255, found character {char!r}"


@pytest.mark.parametrize(
    ("header", "missing"),
    [("emotion,Usage", "pixels"), ("emotion,pixels", "usage"), ("emotion", "pixels"), ("", "pixels")],
)
def test_missing_column_is_reported_on_line_1(header, missing):
    text = header + "\n" + "0,1 2 3,Training\n"
    message = parse_error(text)
    assert message.startswith(f"line 1: missing column '{missing}'")
    assert message.endswith("expected emotion,pixels,Usage")


def test_missing_column_from_file_is_data_error(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,Usage\n0,Training\n")
    with pytest.raises(DataError, match="^line 1: missing column 'pixels' \\(header has emotion, usage\\)"):
        load_fer2013(path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("usage", ["Validation", "training", "Test", ""])
def test_unknown_usage_names_the_line(usage):
    text = "\n".join(["emotion,pixels,Usage", valid_row(1), valid_row(2, "PublicTest"), valid_row(3, usage)]) + "\n"
    assert parse_error(text) == (
        f"line 4: unknown Usage '{usage}'; expected one of Training, PublicTest, PrivateTest"
    )


def test_unknown_usage_line_counts_crlf_lines():
    rows = ["emotion,pixels,Usage", valid_row(1), valid_row(2), valid_row(3, "Validation")]
    assert parse_error("\r\n".join(rows) + "\r\n").startswith("line 4: unknown Usage 'Validation'")


def test_extra_column_names_the_line():
    text = "\n".join(["emotion,pixels,Usage", valid_row(1), valid_row(2) + ",extra"]) + "\n"
    assert parse_error(text) == "line 3: expected 3 comma-separated columns, found 4"


def test_missing_trailing_column_names_the_line():
    pixels = pixels_text(random_faces(4, 1)[0])
    text = "\n".join(["emotion,pixels,Usage", valid_row(1), valid_row(2), f"0,{pixels}"]) + "\n"
    assert parse_error(text) == "line 4: expected 3 comma-separated columns, found 2"


def test_error_line_numbers_count_blank_lines_and_crlf():
    values = ["1"] * 2304
    values[0] = "300"
    rows = ["emotion,pixels,Usage", valid_row(1), "", valid_row(2), row_with_pixels(values)]
    assert parse_error("\r\n".join(rows) + "\r\n") == "line 5: pixel value 300 is outside 0..255"


def test_bad_data_in_gzip_file_raises_data_error_with_line(tmp_path):
    path = tmp_path / "fer2013.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("emotion,pixels,Usage\n" + valid_row(1) + "\n" + valid_row(2, "Validation") + "\n")
    with pytest.raises(DataError, match="^line 3: unknown Usage 'Validation'"):
        load_fer2013(path, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_data_error_is_a_value_error_and_data_not_found_a_file_not_found_error():
    assert issubclass(DataError, ValueError)
    assert issubclass(DataNotFound, FileNotFoundError)


def test_data_errors_are_user_errors_that_command_lines_print_in_one_line():
    assert issubclass(DataError, UserError)
    assert issubclass(DataNotFound, UserError)


# ---------------------------------------------------------------------------------- resolve_data_path


def test_resolve_without_flag_or_env_explains_how_to_set_it(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    for flag in (None, ""):
        with pytest.raises(DataNotFound) as caught:
            resolve_data_path(flag)
        message = str(caught.value)
        assert "--data" in message
        assert "FER2013_PATH" in message
        assert DOWNLOAD_HINT in message
        assert DOWNLOAD_HINT.startswith("https://www.kaggle.com/")
        assert "\n" not in message


def test_resolve_with_empty_env_var_is_not_found(monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, "")
    with pytest.raises(DataNotFound, match="FER2013_PATH"):
        resolve_data_path(None)


def test_resolve_uses_env_var_when_flag_absent(tmp_path, monkeypatch):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n")
    monkeypatch.setenv("FER2013_PATH", str(path))
    assert resolve_data_path(None) == path
    assert resolve_data_path("") == path


def test_resolve_flag_wins_over_env(tmp_path, monkeypatch):
    from_env = tmp_path / "env.csv"
    from_flag = tmp_path / "flag.csv"
    from_env.write_text("x\n")
    from_flag.write_text("x\n")
    monkeypatch.setenv("FER2013_PATH", str(from_env))
    assert resolve_data_path(str(from_flag)) == from_flag
    assert resolve_data_path(from_flag) == from_flag  # PathLike accepted


def test_resolve_flag_wins_even_when_env_points_nowhere(tmp_path, monkeypatch):
    from_flag = tmp_path / "flag.csv"
    from_flag.write_text("x\n")
    monkeypatch.setenv("FER2013_PATH", str(tmp_path / "missing.csv"))
    assert resolve_data_path(from_flag) == from_flag


def test_resolve_nonexistent_flag_path_names_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv("FER2013_PATH", raising=False)
    missing = tmp_path / "no" / "fer2013.csv"
    with pytest.raises(DataNotFound) as caught:
        resolve_data_path(str(missing))
    message = str(caught.value)
    assert message.startswith(f"FER2013 not found at {missing} (from --data)")
    assert DOWNLOAD_HINT in message
    assert "\n" not in message


def test_resolve_nonexistent_env_path_names_the_path_and_the_variable(tmp_path, monkeypatch):
    missing = tmp_path / "no" / "fer2013.csv.gz"
    monkeypatch.setenv("FER2013_PATH", str(missing))
    with pytest.raises(DataNotFound) as caught:
        resolve_data_path(None)
    assert str(caught.value).startswith(f"FER2013 not found at {missing} (from FER2013_PATH)")


def test_resolve_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "fer2013.csv").write_text("x\n")
    assert resolve_data_path("~/fer2013.csv") == tmp_path / "fer2013.csv"


# --------------------------------------------------------------------------------- constant faces


def test_constant_images_are_dropped_and_counted(tmp_path, faces):
    images, usage = faces
    nearly_constant = np.zeros((48, 48), dtype=np.uint8)
    nearly_constant[47, 47] = 1
    all_images = np.concatenate([
        images[:3], np.zeros((1, 48, 48), np.uint8), images[3:6], np.full((1, 48, 48), 255, np.uint8),
        nearly_constant[None], images[6:], np.zeros((1, 48, 48), np.uint8),
    ])
    all_usage = np.concatenate([usage[:3], [V], usage[3:6], [T], [P], usage[6:], [T]]).astype(np.int8)
    path = tmp_path / "fer2013.csv"
    write_csv(path, all_images, all_usage)
    expected_images = np.concatenate([images[:6], nearly_constant[None], images[6:]])
    expected_usage = np.concatenate([usage[:6], [P], usage[6:]]).astype(np.int8)
    for attempt in ("parsed", "cached"):
        loaded = load_fer2013(path, cache_dir=tmp_path / "cache")
        assert loaded.dropped_constant == 3, attempt
        np.testing.assert_array_equal(loaded.images, expected_images)
        np.testing.assert_array_equal(loaded.usage, expected_usage)


# ------------------------------------------------------------------------------------------- splits


def test_split_faces_by_usage_and_flags_test_faces_copied_from_training():
    pool = random_faces(2024, 8)
    one_pixel_off = pool[1].copy()
    one_pixel_off[10, 10] ^= 1
    images = np.stack([
        pool[0],  # Training
        pool[1],  # Training
        pool[2],  # PublicTest
        pool[0],  # PrivateTest  copy of Training            -> flagged
        pool[3],  # PrivateTest  unique
        one_pixel_off,  # PrivateTest  differs in one pixel  -> not flagged
        pool[2],  # PrivateTest  copy of a PublicTest face   -> not flagged
        pool[4],  # Training
        pool[1],  # PrivateTest  copy of Training            -> flagged
        pool[4],  # PublicTest   copy of Training                -> flagged
        pool[5],  # PrivateTest  unique
    ])
    usage = np.array([T, T, V, P, P, P, P, T, P, V, P], dtype=np.int8)
    splits = split_faces(Faces(images=images, usage=usage, source="memory", dropped_constant=0))
    np.testing.assert_array_equal(splits.train, images[[0, 1, 7]])
    np.testing.assert_array_equal(splits.val, images[[2, 9]])
    np.testing.assert_array_equal(splits.test, images[[3, 4, 5, 6, 8, 10]])
    assert splits.test_in_training.dtype == bool
    assert splits.test_in_training.tolist() == [True, False, False, False, True, False]
    np.testing.assert_array_equal(splits.test_unique, images[[4, 5, 6, 10]])
    assert splits.val_in_training.tolist() == [False, True]
    np.testing.assert_array_equal(splits.val_unique, images[[2]])


def test_validation_leaves_out_the_faces_copied_from_training_and_logs_how_many(caplog):
    pool = random_faces(2025, 12)
    one_pixel_off = pool[0].copy()
    one_pixel_off[0, 0] ^= 1
    images = np.concatenate([pool[:6], pool[[0, 6, 3, 7, 5]], one_pixel_off[None], pool[8:12]])
    usage = np.array([T] * 6 + [V] * 6 + [P] * 4, dtype=np.int8)
    with caplog.at_level(logging.INFO, logger="denoise_core.data"):
        splits = split_faces(Faces(images=images, usage=usage, source="memory", dropped_constant=0))
    assert splits.val_in_training.tolist() == [True, False, True, False, True, False]
    np.testing.assert_array_equal(splits.val_unique, np.stack([pool[6], pool[7], one_pixel_off]))
    np.testing.assert_array_equal(splits.validation(unique=True), splits.val_unique)
    np.testing.assert_array_equal(splits.validation(unique=False), images[usage == V])
    assert not any(face.tobytes() in {t.tobytes() for t in splits.train} for face in splits.val_unique)
    assert "6 val, 4 test (3 val and 0 test faces also occur in Training" in caplog.text


def test_split_faces_with_no_test_faces():
    images = random_faces(8, 2)
    splits = split_faces(Faces(images=images, usage=np.array([T, V], np.int8), source="memory", dropped_constant=0))
    assert splits.test.shape == (0, 48, 48)
    assert splits.test_in_training.shape == (0,)
    assert splits.test_unique.shape == (0, 48, 48)
    assert splits.val_in_training.tolist() == [False] and splits.val_unique.shape == (1, 48, 48)


def test_load_splits_resolves_loads_and_splits(tmp_path, monkeypatch, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    write_csv(path, images, usage)
    monkeypatch.setenv("FER2013_PATH", str(path))
    splits = load_splits(None, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(splits.train, images[usage == T])
    np.testing.assert_array_equal(splits.val, images[usage == V])
    np.testing.assert_array_equal(splits.test, images[usage == P])
    assert not splits.test_in_training.any()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


# -------------------------------------------------------------------------------------------- cache


def forbid_parsing(monkeypatch):
    def fail(path):
        raise AssertionError(f"source {path} was parsed although a cache entry should have been used")

    monkeypatch.setattr(data, "_read_source", fail)


def test_second_load_reads_the_cache(tmp_path, monkeypatch, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv.gz"
    write_csv(path, images, usage)
    cache = tmp_path / "cache"
    first = load_fer2013(path, cache_dir=cache)
    entries = list(cache.iterdir())
    assert len(entries) == 1
    assert entries[0].name.startswith("fer2013.csv.gz-") and entries[0].suffix == ".npz"
    with np.load(entries[0]) as stored:
        np.testing.assert_array_equal(stored["images"], images)
        np.testing.assert_array_equal(stored["usage"], usage)
    forbid_parsing(monkeypatch)
    second = load_fer2013(path, cache_dir=cache)
    assert_faces_equal(second, first.images, first.usage)
    assert second.source == str(path)
    assert list(cache.iterdir()) == entries  # nothing new, no .partial left behind


def test_changed_content_with_same_size_and_mtime_is_reparsed(tmp_path, faces):
    images, usage = faces
    # Values 100..199 are all three digits: both versions of the file have exactly the same size.
    old = random_faces(1, len(usage), 100, 200)
    new = random_faces(2, len(usage), 100, 200)
    path = tmp_path / "fer2013.csv"
    cache = tmp_path / "cache"
    write_csv(path, old, usage)
    stat = path.stat()
    assert_faces_equal(load_fer2013(path, cache_dir=cache), old, usage)
    write_csv(path, new, usage)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert_faces_equal(load_fer2013(path, cache_dir=cache), new, usage)


def test_changed_source_with_bumped_mtime_is_reparsed_never_stale(tmp_path, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    cache = tmp_path / "cache"
    write_csv(path, images, usage)
    assert_faces_equal(load_fer2013(path, cache_dir=cache), images, usage)

    new_images, new_usage = random_faces(55, 4), np.array([P, P, V, T], dtype=np.int8)
    write_csv(path, new_images, new_usage)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert_faces_equal(load_fer2013(path, cache_dir=cache), new_images, new_usage)

    # Only the mtime changes: still the current content, read again from source.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert_faces_equal(load_fer2013(path, cache_dir=cache), new_images, new_usage)
    assert len(list(cache.glob("*.npz"))) == 3


def test_changed_image_folder_is_reparsed(tmp_path):
    root, images, usage = image_folder(tmp_path)
    cache = tmp_path / "cache"
    assert_faces_equal(load_fer2013(root, cache_dir=cache), images, usage)
    extra = random_faces(31, 1)[0]
    save_png(root / "test" / "zzz" / "im0.png", extra)  # sorts last -> position 5 -> PrivateTest
    assert_faces_equal(
        load_fer2013(root, cache_dir=cache),
        np.concatenate([images, extra[None]]),
        np.concatenate([usage, [P]]).astype(np.int8),
    )


def test_use_cache_false_writes_nothing(tmp_path, monkeypatch, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    write_csv(path, images, usage)
    cache = tmp_path / "cache"
    assert_faces_equal(load_fer2013(path, cache_dir=cache, use_cache=False), images, usage)
    assert not cache.exists()
    assert not (tmp_path / "default-cache").exists()


def test_use_cache_false_ignores_an_existing_cache_entry(tmp_path, monkeypatch, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    write_csv(path, images, usage)
    cache = tmp_path / "cache"
    load_fer2013(path, cache_dir=cache)
    calls = []
    real = data._read_source
    monkeypatch.setattr(data, "_read_source", lambda p: calls.append(p) or real(p))
    assert_faces_equal(load_fer2013(path, cache_dir=cache, use_cache=False), images, usage)
    assert calls == [path]


def test_default_cache_dir_follows_facestudy_cache(tmp_path, monkeypatch, faces):
    images, usage = faces
    path = tmp_path / "fer2013.csv"
    write_csv(path, images, usage)
    monkeypatch.setenv("FACESTUDY_CACHE", str(tmp_path / "elsewhere"))
    assert data.default_cache_dir() == tmp_path / "elsewhere"
    assert_faces_equal(load_fer2013(path), images, usage)
    assert len(list((tmp_path / "elsewhere").glob("fer2013.csv-*.npz"))) == 1


def damage_cache(entry: Path, how: str) -> None:
    raw = entry.read_bytes()
    with np.load(entry) as stored:
        images, usage = stored["images"], stored["usage"]
    if how == "truncated":
        entry.write_bytes(raw[: len(raw) // 2])
    elif how == "byte-flip":
        flipped = bytearray(raw)
        flipped[len(raw) // 3] ^= 0xFF
        entry.write_bytes(bytes(flipped))
    elif how == "empty":
        entry.write_bytes(b"")
    elif how == "garbage":
        entry.write_bytes(b"this is not a zip file at all")
    elif how == "missing-key":
        np.savez(entry, images=images)
    elif how == "wrong-shape":
        np.savez(entry, images=images.reshape(len(images), -1), usage=usage)
    elif how == "wrong-dtype":
        np.savez(entry, images=images.astype(np.float32), usage=usage)
    elif how == "short-usage":
        np.savez(entry, images=images, usage=usage[:-1])
    elif how == "pickled":
        np.savez(entry, images=np.array([object()], dtype=object), usage=usage)


@pytest.mark.parametrize("how", ["truncated", "byte-flip", "empty", "garbage", "missing-key", "wrong-shape", "wrong-dtype", "short-usage", "pickled"])
def test_a_damaged_parse_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch, caplog, faces, how):
    images, usage = faces
    path = tmp_path / "fer2013.csv.gz"
    write_csv(path, images, usage)
    cache = tmp_path / "cache"
    load_fer2013(path, cache_dir=cache)
    [entry] = cache.iterdir()
    damage_cache(entry, how)
    with caplog.at_level(logging.WARNING, logger="denoise_core.data"):
        assert_faces_equal(load_fer2013(path, cache_dir=cache), images, usage)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0] and "parsing the source again" in warnings[0]
    assert "\n" not in warnings[0]
    assert list(cache.iterdir()) == [entry]
    forbid_parsing(monkeypatch)
    assert_faces_equal(load_fer2013(path, cache_dir=cache), images, usage)  # rewritten: read from the cache


def test_failed_parse_writes_no_cache_entry(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + valid_row(1, "Validation") + "\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataError):
        load_fer2013(path, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


# -------------------------------------------------------------------------------------------- to_float


def test_to_float_maps_uint8_to_unit_float32():
    images = np.array([[[0, 1, 128], [254, 255, 51]]], dtype=np.uint8)
    result = to_float(images)
    assert result.dtype == np.float32
    assert result.shape == images.shape
    assert result[0, 0, 0] == 0.0
    assert result[0, 1, 1] == 1.0
    assert result.min() >= 0.0 and result.max() <= 1.0
    np.testing.assert_array_equal(result, images.astype(np.float32) / np.float32(255))
    assert result[0, 1, 2] == np.float32(0.2)


def test_to_float_on_random_faces_stays_in_unit_range():
    images = random_faces(9, 3)
    result = to_float(images)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result * 255, images, atol=1e-4)
    assert 0.0 <= result.min() and result.max() <= 1.0


# ----------------------------------------------------------------------------------------- read_csv_head


def test_read_csv_head_returns_header_and_first_rows_of_each_usage(tmp_path):
    usage = np.array([T, T, T, V, P, T, V, P, V, P, V], dtype=np.int8)
    images = random_faces(11, len(usage))
    lines = csv_text(images, usage).encode().splitlines(keepends=True)
    path = tmp_path / "fer2013.csv"
    path.write_bytes(b"".join(lines))
    # rows (0-based): Training 0,1  PublicTest 3,6  PrivateTest 4,7
    expected = b"".join([lines[0]] + [lines[1 + r] for r in (0, 1, 3, 4, 6, 7)])
    assert read_csv_head(path, 2) == expected
    assert read_csv_head(str(path), 0) == lines[0]


def test_read_csv_head_reads_gzip_and_its_slice_parses(tmp_path):
    usage = np.array([T, V, T, P, T, P, V, V, P], dtype=np.int8)
    images = random_faces(12, len(usage))
    path = tmp_path / "fer2013.csv.gz"
    write_csv(path, images, usage)
    head = read_csv_head(path, 1)
    assert head.splitlines()[0] == b"emotion,pixels,Usage"
    got_images, got_usage = parse_csv_bytes(head)
    np.testing.assert_array_equal(got_images, images[[0, 1, 3]])
    assert got_usage.tolist() == [T, V, P]


@pytest.mark.parametrize(("usage", "per_usage", "newline", "kept"), [
    ([T, T, T, V], 2, "\n", [0, 1, 3]),  # a usage with fewer rows than asked keeps all of them
    ([P, T, V, T], 1, "\r\n", [0, 1, 2]),  # CRLF line ends
], ids=["short-usage", "crlf"])
def test_read_csv_head_takes_the_first_rows_of_each_usage(tmp_path, usage, per_usage, newline, kept):
    usage = np.array(usage, dtype=np.int8)
    images = random_faces(13, len(usage))
    path = tmp_path / "fer2013.csv"
    path.write_bytes(csv_text(images, usage, newline=newline).encode())
    got_images, got_usage = parse_csv_bytes(read_csv_head(path, per_usage))
    np.testing.assert_array_equal(got_images, images[kept])
    assert got_usage.tolist() == usage[kept].tolist()


# --------------------------------------------------------------------------------- real data (slice)


def test_real_fer2013_slice_parses_like_pandas(fer2013_path, tmp_path):
    pd = pytest.importorskip("pandas")
    if not fer2013_path.name.lower().endswith((".csv", ".csv.gz")):
        pytest.skip(f"slice test needs a fer2013.csv or fer2013.csv.gz, got {fer2013_path}")
    head = read_csv_head(fer2013_path, 50)
    slice_path = tmp_path / "fer2013-slice.csv"
    slice_path.write_bytes(head)

    faces = load_fer2013(slice_path, use_cache=False)
    assert len(faces.images) == 150
    assert faces.dropped_constant == 0
    assert faces.images.dtype == np.uint8
    assert faces.images.shape == (150, 48, 48)
    assert np.bincount(faces.usage, minlength=3).tolist() == [50, 50, 50]

    frame = pd.read_csv(io.BytesIO(head))
    assert list(frame.columns) == ["emotion", "pixels", "Usage"]
    expected = np.stack([np.array(s.split(), dtype=np.uint8).reshape(48, 48) for s in frame["pixels"]])
    np.testing.assert_array_equal(faces.images, expected)
    codes = {name: index for index, name in enumerate(USAGES)}
    assert faces.usage.tolist() == [codes[u] for u in frame["Usage"]]


# sha256 of the real FER2013 splits' bytes (fer2013.csv.gz from Kaggle): the test faces are those every report
# and the model card have scored; validation lost its 279 copies of Training faces.
REAL_TEST_UNIQUE_SHA256 = "31b6df7730fa007fd775755dcdeb6e115b29f689e4a4f44356690cb5a002cef7"
REAL_VAL_SHA256 = "33f6c07b32acfbdc6d6f862c2bb6ecd02376176ff9e4fe02dc9e3114cb31dfdc"
REAL_VAL_UNIQUE_SHA256 = "f321e6f7c1ae75b69e601828d1f69c6edf074191dec3d115875f7247764a5771"


def digest(images: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes()).hexdigest()


def test_real_fer2013_test_faces_stay_pinned_and_validation_drops_its_279_copies_of_training(fer2013_path):
    if fer2013_path.name.lower() not in ("fer2013.csv", "fer2013.csv.gz"):
        pytest.skip(f"the pinned checksums are of Kaggle's fer2013.csv(.gz), got {fer2013_path}")
    splits = split_faces(load_fer2013(fer2013_path, use_cache=False))
    assert (len(splits.test), len(splits.test_unique)) == (3589, 3301)
    assert digest(splits.test_unique) == REAL_TEST_UNIQUE_SHA256
    assert (len(splits.val), int(splits.val_in_training.sum()), len(splits.val_unique)) == (3588, 279, 3309)
    assert digest(splits.val) == REAL_VAL_SHA256
    assert digest(splits.val_unique) == REAL_VAL_UNIQUE_SHA256
