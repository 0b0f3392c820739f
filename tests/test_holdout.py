import json
import logging

import numpy as np
import pytest

from denoise_core.errors import InputError, UserError
from denoise_core.noise import NoiseSpec
from denoise_core.holdout import (
    DEFAULT_CONDITIONS, REALISTIC_CONDITIONS, SYNTHETIC_CONDITIONS, HoldoutError, holdout_for, load_holdout, make_holdout, save_holdout, validate_conditions,
)
from synthetic import smooth_faces

CONDITIONS = ("sp:0.1", "sp:0.9", "gauss:25", "sp:0.1+gauss:10")


def test_holdout_covers_required_noise_grid():
    densities = {float(c[3:]) for c in DEFAULT_CONDITIONS if c.startswith("sp:") and "+" not in c}
    sigmas = {float(c[6:]) for c in DEFAULT_CONDITIONS if c.startswith("gauss:") and "+" not in c}
    assert min(densities) == 0.05 and max(densities) == 0.9 and {0.1, 0.3, 0.5, 0.7} <= densities
    assert min(sigmas) == 10 and max(sigmas) == 50
    assert any("+" in c for c in DEFAULT_CONDITIONS)


def test_the_default_hold_out_adds_the_realistic_conditions_after_the_synthetic_ones():
    assert DEFAULT_CONDITIONS == SYNTHETIC_CONDITIONS + REALISTIC_CONDITIONS and len(SYNTHETIC_CONDITIONS) == 18
    kinds = [NoiseSpec.parse(c).kind for c in REALISTIC_CONDITIONS]
    assert kinds.count("jpeg") == 5 and kinds.count("rv") == 4
    qualities = [NoiseSpec.parse(c).jpeg[0] for c in REALISTIC_CONDITIONS if "jpeg" in c]
    densities = [NoiseSpec.parse(c).random[0] for c in REALISTIC_CONDITIONS if c.startswith("rv:")]
    assert (min(qualities), max(qualities)) == (75, 95) and (min(densities), max(densities)) == (0.05, 0.3)


def test_holdout_is_reproducible_with_a_stable_checksum():
    faces = smooth_faces(6, seed=3)
    first, again = make_holdout(faces, CONDITIONS, seed=11), make_holdout(faces, CONDITIONS, seed=11)
    assert first.checksum == again.checksum
    assert np.array_equal(first.noisy, again.noisy)
    assert first.noisy.dtype == np.uint8 and first.noisy.shape == (4, 6, 48, 48)
    # Pinned: the hold-out must be byte-identical on every machine and release.
    assert first.checksum == PINNED_CHECKSUM
    assert make_holdout(faces, CONDITIONS, seed=12).checksum != first.checksum


def test_holdout_condition_order_does_not_change_its_noise():
    faces = smooth_faces(4, seed=3)
    forward = make_holdout(faces, CONDITIONS, seed=11)
    backward = make_holdout(faces, tuple(reversed(CONDITIONS)), seed=11)
    for condition in CONDITIONS:
        assert np.array_equal(forward.noisy_for(condition), backward.noisy_for(condition))


def test_holdout_noise_levels_are_as_labelled():
    holdout = make_holdout(smooth_faces(20, seed=1), CONDITIONS, seed=5)
    dense = holdout.noisy_for("sp:0.9")
    changed = (dense == 0) | (dense == 255)
    assert changed.mean() == pytest.approx(0.9, abs=0.01)
    residual = holdout.noisy_for("gauss:25").astype(float) - holdout.clean
    assert residual.std() == pytest.approx(25, rel=0.05)


def test_saved_holdout_round_trips_and_detects_tampering(tmp_path):
    holdout = make_holdout(smooth_faces(5), CONDITIONS, seed=1)
    path = tmp_path / "holdout.npz"
    save_holdout(holdout, path)
    loaded = load_holdout(path)
    assert loaded.checksum == holdout.checksum and loaded.conditions == holdout.conditions
    assert np.array_equal(loaded.noisy, holdout.noisy)
    tampered = holdout.noisy.copy()
    tampered[0, 0, 0, 0] ^= 1
    np.savez(path, clean=holdout.clean, noisy=tampered)
    with pytest.raises(HoldoutError, match="fails its checksum"):
        load_holdout(path)


def test_holdout_for_generates_once_then_reads_the_file(tmp_path):
    faces = smooth_faces(5)
    first = holdout_for(faces, tmp_path, CONDITIONS, seed=2)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2
    assert holdout_for(faces, tmp_path, CONDITIONS, seed=2).checksum == first.checksum
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_a_clean_condition_is_the_clean_faces_and_changes_no_other_condition():
    faces = smooth_faces(6, seed=3)
    with_clean = make_holdout(faces, ("none", "sp:0.5"), seed=11)
    alone = make_holdout(faces, ("sp:0.5",), seed=11)
    assert np.array_equal(with_clean.noisy_for("none"), faces)
    assert np.array_equal(with_clean.noisy_for("sp:0.5"), alone.noisy_for("sp:0.5"))


def test_validate_conditions_gives_canonical_fixed_levels():
    assert validate_conditions(["none", "SP:0.10", "gauss:25", "gauss:10+sp:0.1"]) == ("none", "sp:0.1", "gauss:25", "sp:0.1+gauss:10")
    assert validate_conditions(DEFAULT_CONDITIONS) == DEFAULT_CONDITIONS


@pytest.mark.parametrize("conditions, named, message", [
    (["sp:0.1", "salt:0.2"], "'salt:0.2'", "valid ones look like"),
    (["sp:0.05-0.5"], "'sp:0.05-0.5'", "is a range"),
    (["sp:0.1|gauss:10"], "'sp:0.1|gauss:10'", "valid ones look like"),
    (["sp:0.1", "sp:0.10"], "'sp:0.10'", "listed twice"),
    ("sp:0.1", "'sp:0.1'", "must be a list"),
])
def test_validate_conditions_names_the_bad_condition_in_one_line(conditions, named, message):
    with pytest.raises(ValueError, match=message) as error:
        validate_conditions(conditions)
    assert named in str(error.value) and "\n" not in str(error.value)

def test_bad_conditions_and_stored_hold_outs_are_user_errors():
    assert issubclass(HoldoutError, UserError) and issubclass(HoldoutError, ValueError)
    with pytest.raises(InputError):
        validate_conditions(["sp:0.1-0.2"])


def damage(path, how: str, holdout) -> None:
    """Damage a stored hold-out the way a disk, a copy or a person might."""
    meta = path.with_suffix(".json")
    raw = path.read_bytes()
    if how == "byte-flip":
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "missing-array":
        np.savez(path, clean=holdout.clean)
    elif how == "altered-noise":  # a valid file whose bytes differ: only the checksum can tell
        tampered = holdout.noisy.copy()
        tampered[0, 0, 0, 0] ^= 1
        np.savez(path, clean=holdout.clean, noisy=tampered)
    elif how == "missing-json":
        meta.unlink()
    elif how == "garbage-json":
        meta.write_text('{"conditions": ["sp:0.1"')
    elif how == "json-without-checksum":
        meta.write_text(json.dumps({"conditions": list(holdout.conditions), "seed": holdout.seed}))


DAMAGES = ["byte-flip", "truncated", "empty", "missing-array", "altered-noise", "missing-json", "garbage-json", "json-without-checksum"]


@pytest.mark.parametrize("how", DAMAGES)
def test_holdout_for_regenerates_a_damaged_hold_out_with_a_warning(tmp_path, caplog, how):
    faces = smooth_faces(5)
    first = holdout_for(faces, tmp_path, CONDITIONS, seed=2)
    [path] = tmp_path.glob("*.npz")
    damage(path, how, first)
    with caplog.at_level(logging.WARNING, logger="denoise_core.holdout"):
        again = holdout_for(faces, tmp_path, CONDITIONS, seed=2)
    assert again.checksum == first.checksum and np.array_equal(again.noisy, first.noisy) and np.array_equal(again.clean, faces)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "generating it again" in warnings[0] and "\n" not in warnings[0]
    caplog.clear()
    assert load_holdout(path).checksum == first.checksum  # rewritten whole
    assert holdout_for(faces, tmp_path, CONDITIONS, seed=2).checksum == first.checksum and not caplog.records
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npz"]


@pytest.mark.parametrize("how", [how for how in DAMAGES if how != "altered-noise"])  # altered: the checksum test below
def test_load_holdout_refuses_a_damaged_hold_out_in_one_line_saying_what_to_do(tmp_path, how):
    holdout = make_holdout(smooth_faces(5), CONDITIONS, seed=1)
    path = tmp_path / "holdout.npz"
    save_holdout(holdout, path)
    damage(path, how, holdout)
    with pytest.raises(HoldoutError) as caught:
        load_holdout(path)
    message = str(caught.value)
    assert message.startswith(f"hold-out {path} ") and "\n" not in message
    assert "delete it" in message and "make_holdout" not in message


def test_load_holdout_names_the_checksum_when_only_the_checksum_can_tell(tmp_path):
    holdout = make_holdout(smooth_faces(5), CONDITIONS, seed=1)
    path = tmp_path / "holdout.npz"
    save_holdout(holdout, path)
    damage(path, "altered-noise", holdout)
    with pytest.raises(HoldoutError, match=r"fails its checksum \(file [0-9a-f]{12} != [0-9a-f]{12}\)"):
        load_holdout(path)
    save_holdout(holdout, path)
    damage(path, "byte-flip", holdout)
    with pytest.raises(HoldoutError, match=r"fails its checksum \(file [0-9a-f]{12} != [0-9a-f]{12}\)"):
        load_holdout(path)


def test_a_hold_out_saved_before_the_file_checksum_is_still_checked_by_its_content(tmp_path):
    holdout = make_holdout(smooth_faces(5), CONDITIONS, seed=1)
    path = tmp_path / "holdout.npz"
    save_holdout(holdout, path)
    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["file_sha256"]
    path.with_suffix(".json").write_text(json.dumps(meta))
    assert load_holdout(path).checksum == holdout.checksum
    damage(path, "altered-noise", holdout)
    with pytest.raises(HoldoutError, match=r"fails its checksum \([0-9a-f]{12} != [0-9a-f]{12}\)"):
        load_holdout(path)


def test_load_holdout_of_a_missing_file_says_how_to_get_one(tmp_path):
    with pytest.raises(HoldoutError) as caught:
        load_holdout(tmp_path / "nowhere.npz")
    message = str(caught.value)
    assert "nowhere.npz does not exist" in message and "make_holdout" not in message and "\n" not in message


PINNED_CHECKSUM = "524a5bd9a0d1fb21e52b1987ab949b1c62a58b7c9470c91cbb45db3759c82129"


REALISTIC = ("sp:0.1+jpeg:90", "gauss:25+jpeg:75", "rv:0.1", "rv:0.3")
PINNED_REALISTIC_CHECKSUM = "ee641c25f0ff494cb05f80103071a939d62758f983aafd22207a1ae4a34b967a"
# make_holdout(smooth_faces(6, seed=3), ..., seed=11) of the 18 synthetic conditions (computed before the realistic
# ones existed) and of the default set that adds them
PINNED_SYNTHETIC_CHECKSUM = "b254bcb1b32aa5200ec65900348391c12a3c354d6ae53775072b2baedd120606"
PINNED_DEFAULT_CHECKSUM = "78687d9f174750d71da5ebc84099c16732ff1db899979f78fb0b6b755f195a42"


def test_realistic_conditions_are_pinned_and_leave_every_old_condition_byte_identical():
    faces = smooth_faces(6, seed=3)
    old = make_holdout(faces, CONDITIONS, seed=11)
    both = make_holdout(faces, CONDITIONS + REALISTIC, seed=11)
    assert old.checksum == PINNED_CHECKSUM
    assert np.array_equal(both.noisy[:len(CONDITIONS)], old.noisy)
    assert make_holdout(faces, REALISTIC, seed=11).checksum == PINNED_REALISTIC_CHECKSUM
    defaults = make_holdout(faces, DEFAULT_CONDITIONS, seed=11)
    assert make_holdout(faces, SYNTHETIC_CONDITIONS, seed=11).checksum == PINNED_SYNTHETIC_CHECKSUM
    assert np.array_equal(defaults.noisy[:len(SYNTHETIC_CONDITIONS)], make_holdout(faces, SYNTHETIC_CONDITIONS, seed=11).noisy)
    assert defaults.checksum == PINNED_DEFAULT_CHECKSUM
    extreme = {c: ((both.noisy[both.conditions.index(c)] == 0) | (both.noisy[both.conditions.index(c)] == 255)).mean()
               for c in ("sp:0.1", "sp:0.1+jpeg:90")}
    assert extreme["sp:0.1"] == pytest.approx(0.1, abs=0.01) and extreme["sp:0.1+jpeg:90"] < 0.7 * extreme["sp:0.1"]  # JPEG smears impulses
