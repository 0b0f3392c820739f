import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from denoise_core.checkpoint import export_model, load_model, save_checkpoint
from denoise_core.data import write_csv
from denoise_core.denoise import denoise_array, main as denoise_main
from denoise_core.model import ModelConfig
from denoise_core.fit import TrainConfig, fit
from denoise_core.train import main as train_main
from synthetic import smooth_faces, smooth_splits, smooth_usage


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    config = TrainConfig(model=ModelConfig(base_width=4, bottleneck_size=8), noise="sp:0.2", epochs=1, batch_size=16)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    return save_checkpoint(export_model(fit(config, smooth_splits(64, 16, 8)).checkpoint), path)


@pytest.fixture()
def tiny_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESTUDY_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "fer2013.csv"
    write_csv(path, smooth_faces(56), smooth_usage(40, 10, 6))
    return path


def run_main(main, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


def test_train_cli_writes_a_complete_run_directory(tiny_csv, tmp_path):
    out = tmp_path / "run"
    code = run_main(train_main, ["--data", str(tiny_csv), "--out", str(out), "--epochs", "2", "--batch-size", "8",
                                 "--model-base-width", "4", "--train-size", "32", "--noise", "sp:0.3"])
    assert code == 0
    assert {"config.yaml", "last.pt", "model.pt", "history.csv", "tensorboard"} <= {p.name for p in out.iterdir()}
    model, checkpoint = load_model(out / "model.pt")
    assert checkpoint["config"]["train_size"] == 32 and checkpoint["config"]["noise"] == "sp:0.3"
    assert len((out / "history.csv").read_text().strip().splitlines()) == 3
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_train_cli_reads_yaml_and_flags_override_it(tiny_csv, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 1\nbatch_size: 8\nloss: mae\nmodel:\n  base_width: 4\n  skip: true\n")
    out = tmp_path / "run"
    assert run_main(train_main, ["--data", str(tiny_csv), "--out", str(out), "--config", str(config), "--lr", "0.01"]) == 0
    _, checkpoint = load_model(out / "model.pt")
    assert checkpoint["config"]["loss"] == "mae" and checkpoint["config"]["lr"] == 0.01
    assert checkpoint["config"]["model"]["skip"] is True


def test_train_cli_refuses_an_existing_run_and_resumes_it(tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data", str(tiny_csv), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--model-base-width", "4"]
    assert run_main(train_main, argv) == 0
    before = (out / "model.pt").read_bytes()
    assert run_main(train_main, argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "model.pt").read_bytes() == before
    assert run_main(train_main, [*argv[:-4], "--epochs", "2", "--resume"]) == 0
    assert len((out / "history.csv").read_text().strip().splitlines()) == 3


def test_train_cli_without_data_says_how_to_set_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FER2013_PATH", raising=False)
    result = subprocess.run([sys.executable, "-m", "denoise_core.train", "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--data" in result.stderr and "FER2013_PATH" in result.stderr
    assert not (tmp_path / "run").exists()


def test_denoise_cli_restores_a_png_and_a_jpg(model_file, tmp_path):
    faces = smooth_faces(2)
    for suffix in (".png", ".jpg"):
        Image.fromarray(faces[0]).save(tmp_path / f"face{suffix}")
        assert run_main(denoise_main, ["--model", str(model_file), str(tmp_path / f"face{suffix}"), str(tmp_path / f"out{suffix}")]) == 0
        with Image.open(tmp_path / f"out{suffix}") as image:
            assert image.size == (48, 48) and image.mode == "L"
    model, _ = load_model(model_file)
    expected = np.round(denoise_array(model, faces[:1] / 255.0)[0] * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)


def test_denoise_cli_restores_a_folder_keeping_names(model_file, tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for index, face in enumerate(smooth_faces(3)):
        Image.fromarray(face).convert("RGB").save(tmp_path / "in" / ("sub" if index else "") / f"f{index}.png")
    assert run_main(denoise_main, ["--model", str(model_file), str(tmp_path / "in"), str(tmp_path / "out")]) == 0
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == ["f0.png", "sub/f1.png", "sub/f2.png"]


@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64"])
def test_denoise_cli_restores_npy_arrays_in_their_dtype(model_file, tmp_path, dtype):
    faces = smooth_faces(4)
    array = faces if dtype == "uint8" else (faces / 255.0).astype(dtype)
    np.save(tmp_path / "in.npy", array)
    assert run_main(denoise_main, ["--model", str(model_file), str(tmp_path / "in.npy"), str(tmp_path / "out.npy")]) == 0
    out = np.load(tmp_path / "out.npy")
    assert out.dtype == np.dtype(dtype) and out.shape == (4, 48, 48)
    model, _ = load_model(model_file)
    expected = denoise_array(model, faces / 255.0)
    scale = 255.0 if dtype == "uint8" else 1.0
    assert np.abs(out / scale - expected).max() <= 0.5 / 255 + 1e-6


def test_denoise_cli_refuses_to_overwrite_unless_asked(model_file, tmp_path, capsys):
    np.save(tmp_path / "in.npy", smooth_faces(2))
    np.save(tmp_path / "out.npy", np.zeros(3))
    assert run_main(denoise_main, ["--model", str(model_file), str(tmp_path / "in.npy"), str(tmp_path / "out.npy")]) == 2
    assert "exists" in capsys.readouterr().err and np.load(tmp_path / "out.npy").shape == (3,)
    assert run_main(denoise_main, ["--overwrite", "--model", str(model_file), str(tmp_path / "in.npy"), str(tmp_path / "out.npy")]) == 0
    assert np.load(tmp_path / "out.npy").shape == (2, 48, 48)


@pytest.mark.parametrize("make_input, message", [
    (lambda d: np.save(d / "in.npy", np.zeros((2, 32, 32), np.uint8)), "expected an array shaped (N, 48, 48)"),
    (lambda d: np.save(d / "in.npy", np.full((2, 48, 48), 3.0)), "must hold values in [0, 1]"),
    (lambda d: np.save(d / "in.npy", np.zeros((2, 48, 48), np.int32)), "dtype int32 is not supported"),
    (lambda d: Image.new("L", (64, 64)).save(d / "in.png"), "is 64x64; faces are 48x48"),
])
def test_denoise_cli_explains_bad_input_in_one_line(model_file, tmp_path, capsys, make_input, message):
    make_input(tmp_path)
    source = next(tmp_path.glob("in.*"))
    assert run_main(denoise_main, ["--model", str(model_file), str(source), str(tmp_path / f"out{source.suffix}")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_denoise_cli_rejects_a_foreign_model_file(tmp_path, capsys):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    np.save(tmp_path / "in.npy", smooth_faces(1))
    assert run_main(denoise_main, ["--model", str(tmp_path / "other.pt"), str(tmp_path / "in.npy"), str(tmp_path / "out.npy")]) == 2
    assert "not a facestudy checkpoint" in capsys.readouterr().err


CLI_MAINS = {"facestudy-train": "denoise_core.train", "facestudy-denoise": "denoise_core.denoise", "facestudy-study": "study.run",
             "facestudy-report": "results.report", "facestudy-compare": "results.compare", "results.showcase": "results.showcase",
             "facestudy-dashboard": "study.dashboard", "results.curves": "results.curves"}


@pytest.mark.parametrize("module", sorted(set(CLI_MAINS.values())))
def test_every_flag_of_every_command_is_described(module, monkeypatch):
    import importlib

    from denoise_core.cli import ArgumentParser

    parsers = []
    monkeypatch.setattr(ArgumentParser, "print_help", lambda self, file=None: parsers.append(self))
    with pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    [parser] = parsers
    undescribed = [action.dest for action in parser._actions
                   if not action.help or action.help.startswith(f"{action.dest} (default") or action.help == action.dest]
    assert not undescribed


def test_console_entry_points_run_the_commands():
    from importlib.metadata import entry_points

    scripts = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.name.startswith("facestudy-")}
    for name, module in CLI_MAINS.items():
        if name.startswith("facestudy-"):
            assert scripts[name].value == f"{module}:main"
            assert callable(scripts[name].load())


def test_an_impulse_model_on_a_face_without_impulses_warns_and_names_the_blind_model(tmp_path, capsys, caplog):
    from denoise_core.denoise import SHIPPED_IMPULSE_MODEL

    faces = np.clip(smooth_faces(2), 1, 254)
    np.save(tmp_path / "gauss.npy", faces)
    salted = faces.copy()
    salted[:, ::4, ::3] = 255
    np.save(tmp_path / "salted.npy", salted)
    assert run_main(denoise_main, ["--model", str(SHIPPED_IMPULSE_MODEL), str(tmp_path / "gauss.npy"), str(tmp_path / "out.npy")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "only 0.00% of its pixels are exactly 0 or 255" in warnings[0] and "use models/fer2013-blind.pt" in warnings[0]
    assert capsys.readouterr().err == "" and np.array_equal(np.load(tmp_path / "out.npy"), faces)
    caplog.clear()
    assert run_main(denoise_main, ["--model", str(SHIPPED_IMPULSE_MODEL), str(tmp_path / "salted.npy"), str(tmp_path / "out2.npy")]) == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_model_not_trained_on_jpeg_warns_on_faces_saved_as_jpeg_and_names_what_to_use(tmp_path, caplog):
    from denoise_core.denoise import SHIPPED_GAUSS_MODEL, SHIPPED_MODEL, shipped_model_for
    from denoise_core.noise import corrupt, make_generator

    faces = torch.from_numpy(smooth_faces(4, seed=2)).float() / 255.0
    saved = corrupt(faces, "gauss:15+jpeg:85", make_generator(0)).mul(255).round().to(torch.uint8).numpy()
    np.save(tmp_path / "saved.npy", saved)
    plain = corrupt(faces, "gauss:15", make_generator(0)).mul(255).round().to(torch.uint8).numpy()
    np.save(tmp_path / "plain.npy", plain)
    assert run_main(denoise_main, ["--model", str(SHIPPED_GAUSS_MODEL), str(tmp_path / "saved.npy"), str(tmp_path / "out.npy")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert shipped_model_for("jpeg") == SHIPPED_MODEL  # the default model is trained on noise saved as JPEG
    assert len(warnings) == 1 and "saved.npy: looks saved as JPEG (about quality 8" in warnings[0]
    assert "use models/fer2013-blind.pt, trained on it" in warnings[0]
    caplog.clear()
    assert run_main(denoise_main, ["--model", str(SHIPPED_GAUSS_MODEL), str(tmp_path / "plain.npy"), str(tmp_path / "out2.npy")]) == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_the_readme_names_every_console_command():
    from importlib.metadata import entry_points

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    paragraph = readme[readme.index("**Commands.**"):].split("\n\n", 1)[0]
    scripts = {ep.name for ep in entry_points(group="console_scripts") if ep.value.split(".")[0] in ("denoise_core", "study", "results")}
    assert scripts and not [name for name in sorted(scripts) if f"`{name}`" not in paragraph]
