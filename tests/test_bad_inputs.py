"""The catalogue of bad inputs: each is refused with exit code 2 and one line on stderr, and leaves the user's files as they were.

Every command runs in-process through its ``main``, exactly as its console entry point does; an exception that
is not a user error (a bug) escapes as a traceback and fails the test.
"""

import errno
import gzip
import hashlib
import os
import pickle
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from denoise_core.checkpoint import export_model, save_checkpoint
from denoise_core.cli import run_cli
from denoise_core.data import USAGES
from denoise_core.denoise import main as denoise_main
from denoise_core.model import ModelConfig
from denoise_core.fit import TrainConfig, fit
from denoise_core.train import main as train_main
from results.compare import main as compare_main
from results.findings import main as findings_main
from results.report import main as report_main
from results.showcase import main as showcase_main
from study.run import main as study_main
from synthetic import Payload, smooth_faces, smooth_splits, smooth_usage, tar_gz

PAYLOAD_MARKER = "payload-ran"


def _csv_bytes(usage: np.ndarray) -> bytes:
    lines = ["emotion,pixels,Usage"]
    for image, code in zip(smooth_faces(len(usage)), usage):
        lines.append(f"0,{' '.join(map(str, image.reshape(-1).tolist()))},{USAGES[code]}")
    return ("\n".join(lines) + "\n").encode()


def _config_files(configs: Path) -> None:
    """Settings files a user might hand over: of the wrong shape, not YAML, or YAML that plain settings refuse (a key twice, aliases)."""
    configs.mkdir()
    (configs / "list.yaml").write_text("- 1\n- 2\n")
    (configs / "syntax.yaml").write_text("lr: [1,\n")
    (configs / "lr-abc.yaml").write_text("lr: abc\n")
    (configs / "model-5.yaml").write_text("model: 5\n")
    (configs / "search-list.yaml").write_text("search: [1, 2]\n")
    (configs / "duplicate.yaml").write_text("lr: 0.01\nepochs: 1\nlr: 0.5\n")
    (configs / "alias.yaml").write_text("lr: &rate 0.01\nweight_decay: *rate\n")
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    (configs / "alias-bomb.yaml").write_text("\n".join(levels) + "\nlr: *a9\n")  # 10**10 strings once expanded


def add_red_team_inputs(root: Path, good: bytes) -> None:
    """The red team's inputs: data in the wrong encoding or packing, streams, recipes as models, deep or non-UTF-8
    configs, damaged trial tables."""
    data, configs = root / "data", root / "configs"
    (data / "header-only.csv").write_text("emotion,pixels,Usage\n")
    (data / "no-training.csv").write_bytes(_csv_bytes(np.array([1, 1, 2, 2], np.int8)))
    (data / "utf16.csv").write_bytes(good.decode().encode("utf-16"))
    (data / "archive.csv.gz").write_bytes(tar_gz(good))
    (data / "twice.csv.gz").write_bytes(gzip.compress(gzip.compress(good)))
    os.mkfifo(data / "pipe.csv")
    (configs / "nested.yaml").write_text("train: " + "[" * 10000 + "]" * 10000 + "\n")
    (configs / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    header = "trial_id,status,best_val_psnr,checkpoint\n"
    for name, content in {"cut": (header + "a,completed,24.1,/x\nb,compl").encode(), "no-id": b"status,best_val_psnr\ncompleted,24.1\n",
                          "binary": bytes(range(256)) * 4}.items():
        (root / "damaged" / name).mkdir(parents=True)
        (root / "damaged" / name / "study.yaml").write_text("name: damaged\n")
        (root / "damaged" / name / "trials.csv").write_bytes(content)


def _sent_studies(root: Path) -> None:
    """Study folders someone sent: Tune state a resume would unpickle, unsigned, changed after signing, or beside an unlisted pickle."""
    from study import signing
    from study.config import build_config, to_yaml

    for name in ("sent-unsigned", "sent-changed", "sent-unlisted"):
        study = root / "studies" / name
        study.mkdir(parents=True)
        config = build_config("smoke", assignments=[("name", name), ("storage", str(root / "studies")), ("data", str(root / "data" / "fer2013.csv"))])
        (study / "study.yaml").write_text(to_yaml(config))
        (study / "tuner.pkl").write_bytes(pickle.dumps({"benign": 1}))
        if name != "sent-unsigned":
            signing.sign(str(study))
    payload = pickle.dumps(Payload(root / PAYLOAD_MARKER))
    (root / "studies" / "sent-unsigned" / "tuner.pkl").write_bytes(payload)
    (root / "studies" / "sent-changed" / "tuner.pkl").write_bytes(payload)
    (root / "studies" / "sent-unlisted" / "trial_1").mkdir()
    (root / "studies" / "sent-unlisted" / "trial_1" / "error.pkl").write_bytes(payload)


def _data_files(data: Path) -> bytes:
    """FER2013 files good and bad; returns the good CSV's bytes."""
    data.mkdir()
    good = _csv_bytes(smooth_usage(40, 10, 6))
    (data / "fer2013.csv").write_bytes(good)
    (data / "no-private.csv").write_bytes(_csv_bytes(smooth_usage(40, 10, 0)))
    (data / "truncated.csv.gz").write_bytes(gzip.compress(good)[:2000])
    (data / "plain.csv.gz").write_bytes(good)
    (data / "truncated.tar.gz").write_bytes(tar_gz(good)[:3000])
    (data / "notes.txt").write_text("not data\n")
    (data / "empty.csv").write_bytes(b"")
    (data / "header.csv").write_text("a,b,c\n1,2,3\n")
    (data / "short-row.csv").write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    (data / "big-pixel.csv").write_text("emotion,pixels,Usage\n0," + " ".join(["300"] * 2304) + ",Training\n")
    for split in ("train", "test"):
        folder = data / "images" / split / "happy"
        folder.mkdir(parents=True)
        Image.fromarray(smooth_faces(1)[0]).save(folder / "0.png")
    (data / "images" / "test" / "happy" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (data / "no-test" / "train").mkdir(parents=True)
    return good


def _model_files(root: Path) -> None:
    """A good model, crafted and damaged ones, and a finished run."""
    models = root / "models"
    models.mkdir()
    config = TrainConfig(model=ModelConfig(base_width=4, bottleneck_size=8), noise="sp:0.2", epochs=1, batch_size=16)
    result = fit(config, smooth_splits(64, 16, 8))
    save_checkpoint(export_model(result.checkpoint), models / "model.pt")
    torch.save({"format": "facestudy-checkpoint", "version": 1, "x": Payload(root / PAYLOAD_MARKER)}, models / "crafted.pt")
    (models / "pickled.pt").write_bytes(pickle.dumps(Payload(root / PAYLOAD_MARKER)))
    (models / "truncated.pt").write_bytes((models / "model.pt").read_bytes()[:5000])
    torch.save({"weights": torch.zeros(3)}, models / "foreign.pt")
    run = root / "runs" / "done"
    run.mkdir(parents=True)
    save_checkpoint(result.checkpoint, run / "last.pt")
    save_checkpoint(export_model(result.checkpoint), run / "model.pt")


def _face_files(root: Path) -> None:
    """Faces to denoise, good and bad, and an output that exists."""
    inputs = root / "inputs"
    inputs.mkdir()
    np.save(inputs / "faces.npy", smooth_faces(3))
    np.save(inputs / "small.npy", np.zeros((3, 32, 32), np.uint8))
    np.save(inputs / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(inputs / "wide.npy", np.zeros((2, 48, 48), np.int64))
    np.save(inputs / "out-of-range.npy", np.full((2, 48, 48), 3.0, np.float32))
    (inputs / "empty.npy").write_bytes(b"")
    (inputs / "truncated.npy").write_bytes((inputs / "faces.npy").read_bytes()[:200])
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(inputs / "big.png")
    Image.fromarray(smooth_faces(1)[0]).save(inputs / "face.png")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (inputs / "notes.txt").write_text("hello\n")
    (inputs / "empty-folder").mkdir()
    (root / "outputs").mkdir()
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(root / "outputs" / "existing.png")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A user's workspace holding good and bad files of every kind the commands read."""
    root = tmp_path_factory.mktemp("workspace")
    cache = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("FACESTUDY_CACHE")
    os.environ["FACESTUDY_CACHE"] = str(cache)
    good = _data_files(root / "data")
    _model_files(root)
    _face_files(root)
    _config_files(root / "configs")
    (root / "a-file").write_text("not a directory\n")
    (root / "studies").mkdir()
    (root / "not-a-study").mkdir()
    add_red_team_inputs(root, good)
    _sent_studies(root)
    yield root
    if saved is None:
        os.environ.pop("FACESTUDY_CACHE", None)
    else:
        os.environ["FACESTUDY_CACHE"] = saved

TRAIN = "--data {ws}/data/fer2013.csv --out {ws}/runs/{case} --epochs 1 --batch-size 8 --model-base-width 4 --train-size 32"
STUDY = "--preset smoke --data {ws}/data/fer2013.csv --storage {ws}/studies --name {case}"
D = "--model {ws}/models/model.pt"
F = "--model {ws}/models/model.pt --data {ws}/data/fer2013.csv"

CASES = [
    # data, through the training command
    ("data-missing", train_main, "--data {ws}/data/nowhere.csv --out {ws}/runs/{case}", r"nowhere\.csv"),
    ("data-truncated-gz", train_main, "--data {ws}/data/truncated.csv.gz --out {ws}/runs/{case}", r"truncated\.csv\.gz"),
    ("data-plain-named-gz", train_main, "--data {ws}/data/plain.csv.gz --out {ws}/runs/{case}", r"plain\.csv\.gz"),
    ("data-truncated-tar", train_main, "--data {ws}/data/truncated.tar.gz --out {ws}/runs/{case}", r"truncated\.tar\.gz"),
    ("data-unknown-type", train_main, "--data {ws}/data/notes.txt --out {ws}/runs/{case}", r"notes\.txt.*unsupported"),
    ("data-empty-file", train_main, "--data {ws}/data/empty.csv --out {ws}/runs/{case}", r"empty\.csv|no faces|empty"),
    ("data-wrong-header", train_main, "--data {ws}/data/header.csv --out {ws}/runs/{case}", r"missing column"),
    ("data-short-row", train_main, "--data {ws}/data/short-row.csv --out {ws}/runs/{case}", r"line 2"),
    ("data-pixel-over-255", train_main, "--data {ws}/data/big-pixel.csv --out {ws}/runs/{case}", r"line 2.*255|255.*line 2"),
    ("data-broken-image", train_main, "--data {ws}/data/images --out {ws}/runs/{case}", r"broken\.png"),
    ("data-folder-without-test", train_main, "--data {ws}/data/no-test --out {ws}/runs/{case}", r"test/"),
    # training settings
    ("train-lr-text", train_main, TRAIN + " --lr abc", r"lr: expected a number"),
    ("train-loss-unknown", train_main, TRAIN + " --loss huber", r"loss must be one of"),
    ("train-noise-dot", train_main, TRAIN + " --noise sp:.", r"bad noise spec 'sp:\.'"),
    ("train-noise-density", train_main, TRAIN + " --noise sp:1.5", r"density must be in 0\.\.1"),
    ("train-val-size-0", train_main, TRAIN + " --val-size 0", r"val_size must be >= 1"),
    ("train-train-size-1", train_main, TRAIN.replace("--train-size 32", "--train-size 1"), r"train_size must be >= 2"),
    ("train-epochs-0", train_main, TRAIN.replace("--epochs 1", "--epochs 0"), r"epochs must be >= 1"),
    ("train-dropout-1.5", train_main, TRAIN + " --model-dropout 1.5", r"dropout must be in \[0, 1\)"),
    ("train-config-list", train_main, TRAIN + " --config {ws}/configs/list.yaml", r"list\.yaml must hold a mapping"),
    ("train-config-syntax", train_main, TRAIN + " --config {ws}/configs/syntax.yaml", r"syntax\.yaml: not valid YAML"),
    ("train-config-lr-text", train_main, TRAIN + " --config {ws}/configs/lr-abc.yaml", r"lr: expected a number"),
    ("train-config-model-5", train_main, TRAIN + " --config {ws}/configs/model-5.yaml", r"model"),
    ("train-config-missing", train_main, TRAIN + " --config {ws}/configs/nowhere.yaml", r"nowhere\.yaml does not exist"),
    ("train-set-no-equals", train_main, TRAIN + " --set lr", r"--set 'lr': write KEY=VALUE"),
    ("train-set-unknown", train_main, TRAIN + " --set model.colour=1", r"unknown setting\(s\) model\.colour"),
    ("train-out-holds-run", train_main, "--data {ws}/data/fer2013.csv --out {ws}/runs/done", r"already holds a run"),
    ("train-out-is-file", train_main, "--data {ws}/data/fer2013.csv --out {ws}/a-file", r"a-file is a file"),
    ("train-resume-nothing", train_main, "--data {ws}/data/fer2013.csv --out {ws}/runs/{case} --resume", r"nothing to resume"),
    ("train-resume-changes-lr", train_main, "--data {ws}/data/fer2013.csv --out {ws}/runs/done --resume --lr 0.5", r"cannot change lr"),
    ("train-init-crafted", train_main, TRAIN + " --init {ws}/models/crafted.pt", r"crafted\.pt was refused"),
    ("train-diverges", train_main, TRAIN + " --lr 1e30", r"diverged at epoch 1"),
    ("train-unknown-flag", train_main, TRAIN + " --learning-rate 1", r"unrecognized arguments: --learning-rate"),
    ("train-config-duplicate-key", train_main, TRAIN + " --config {ws}/configs/duplicate.yaml", r"duplicate\.yaml: .*duplicate key 'lr'"),
    ("train-config-alias", train_main, TRAIN + " --config {ws}/configs/alias.yaml", r"alias\.yaml: .*alias \*rate refused"),
    ("train-config-alias-bomb", train_main, TRAIN + " --config {ws}/configs/alias-bomb.yaml", r"alias-bomb\.yaml: .*alias \*a0 refused"),
    ("train-lr-nan", train_main, TRAIN + " --lr .nan", r"lr: expected a finite number, got nan"),
    ("train-lr-inf", train_main, TRAIN + " --lr .inf", r"lr: expected a finite number, got inf"),
    ("train-set-lr-minus-inf", train_main, TRAIN + " --set lr=-.inf", r"lr: expected a finite number"),
    ("train-seed-negative", train_main, TRAIN + " --seed -1", r"seed must be in 0\.\.4294967295"),
    ("train-seed-too-big", train_main, TRAIN + " --seed 4294967296", r"seed must be in 0\.\.4294967295"),
    ("train-grid-every-negative", train_main, TRAIN + " --grid-every -1", r"--grid-every must be >= 0"),
    ("train-min-delta-negative", train_main, TRAIN + " --min-delta -5", r"min_delta must be >= 0"),
    # denoising
    ("denoise-model-missing", denoise_main, "--model {ws}/models/nowhere.pt {ws}/inputs/face.png {ws}/outputs/{case}.png", r"nowhere\.pt"),
    ("denoise-model-crafted", denoise_main, "--model {ws}/models/crafted.pt {ws}/inputs/face.png {ws}/outputs/{case}.png", r"was refused"),
    ("denoise-model-plain-pickle", denoise_main, "--model {ws}/models/pickled.pt {ws}/inputs/face.png {ws}/outputs/{case}.png", r"pickled\.pt"),
    ("denoise-model-truncated", denoise_main, "--model {ws}/models/truncated.pt {ws}/inputs/face.png {ws}/outputs/{case}.png", r"truncated\.pt is damaged"),
    ("denoise-model-foreign", denoise_main, "--model {ws}/models/foreign.pt {ws}/inputs/face.png {ws}/outputs/{case}.png", r"not a facestudy checkpoint"),
    ("denoise-input-missing", denoise_main, D + " {ws}/inputs/nowhere.png {ws}/outputs/{case}.png", r"nowhere\.png does not exist"),
    ("denoise-output-exists", denoise_main, D + " {ws}/inputs/face.png {ws}/outputs/existing.png", r"existing\.png exists"),
    ("denoise-npy-shape", denoise_main, D + " {ws}/inputs/small.npy {ws}/outputs/{case}.npy", r"small\.npy"),
    ("denoise-npy-objects", denoise_main, D + " {ws}/inputs/objects.npy {ws}/outputs/{case}.npy", r"objects\.npy"),
    ("denoise-npy-int64", denoise_main, D + " {ws}/inputs/wide.npy {ws}/outputs/{case}.npy", r"wide\.npy"),
    ("denoise-npy-range", denoise_main, D + " {ws}/inputs/out-of-range.npy {ws}/outputs/{case}.npy", r"out-of-range\.npy"),
    ("denoise-npy-empty", denoise_main, D + " {ws}/inputs/empty.npy {ws}/outputs/{case}.npy", r"empty\.npy"),
    ("denoise-npy-truncated", denoise_main, D + " {ws}/inputs/truncated.npy {ws}/outputs/{case}.npy", r"truncated\.npy"),
    ("denoise-image-size", denoise_main, D + " {ws}/inputs/big.png {ws}/outputs/{case}.png", r"big\.png.*64x64"),
    ("denoise-image-broken", denoise_main, D + " {ws}/inputs/broken.png {ws}/outputs/{case}.png", r"broken\.png"),
    ("denoise-input-type", denoise_main, D + " {ws}/inputs/notes.txt {ws}/outputs/{case}.txt", r"unsupported type"),
    ("denoise-empty-folder", denoise_main, D + " {ws}/inputs/empty-folder {ws}/outputs/{case}", r"holds no \.png"),
    ("denoise-npy-to-png", denoise_main, D + " {ws}/inputs/faces.npy {ws}/outputs/{case}.png", r"must end in \.npy"),
    # --overwrite replaces earlier outputs only: never the input, a folder of the user's, or a path of another kind
    ("denoise-npy-onto-itself", denoise_main, D + " {ws}/inputs/faces.npy {ws}/inputs/faces.npy --overwrite", r"is the input itself"),
    ("denoise-folder-onto-itself", denoise_main, D + " {ws}/inputs {ws}/inputs --overwrite", r"is the input itself"),
    ("denoise-output-inside-input", denoise_main, D + " {ws}/data/images {ws}/data/images/clean", r"lies inside the input folder"),
    ("denoise-folder-onto-a-file", denoise_main, D + " {ws}/data/images/train {ws}/outputs/existing.png --overwrite", r"is a file, but input"),
    ("denoise-file-onto-a-folder", denoise_main, D + " {ws}/inputs/face.png {ws}/outputs --overwrite", r"is a folder, but input"),
    # the study, before Ray starts
    ("study-search-list", study_main, STUDY + " --set search=[1,2]", r"search: expected a mapping, got \[1, 2\]"),
    ("study-config-search-list", study_main, STUDY + " --config {ws}/configs/search-list.yaml", r"search: expected a mapping"),
    ("study-config-list", study_main, STUDY + " --config {ws}/configs/list.yaml", r"list\.yaml must hold a mapping"),
    ("study-config-syntax", study_main, STUDY + " --config {ws}/configs/syntax.yaml", r"not valid YAML"),
    ("study-storage-file", study_main, "--preset smoke --data {ws}/data/fer2013.csv --storage {ws}/a-file --name {case}", r"a-file is a file"),
    ("study-unknown-preset", study_main, "--preset huge", r"invalid choice: 'huge'"),
    ("study-resume-nothing", study_main, "--storage {ws}/studies --name {case} --resume", r"nothing to resume"),
    ("study-no-private-test", study_main, "--preset smoke --data {ws}/data/no-private.csv --storage {ws}/studies --name {case}", r"no PrivateTest"),
    ("study-bad-distribution", study_main, STUDY + " --set 'search.lr={{uniform: [1]}}'", r"uniform needs \[low, high\]"),
    ("study-val-noise-range", study_main, STUDY + " --set holdout_conditions=[sp:0.1-0.2]", r"is a range"),
    ("study-init-missing", study_main, STUDY + " --set train.init={ws}/models/nowhere.pt", r"nowhere\.pt does not exist"),
    ("study-seed-negative", study_main, STUDY + " --seed -1", r"seed must be in 0\.\.4294967295"),
    ("study-train-seed-too-big", study_main, STUDY + " --train-seed 4294967296", r"train: seed must be in 0\.\.4294967295"),
    ("study-grid-every-negative", study_main, STUDY + " --grid-every -1", r"grid_every must be >= 0"),
    ("study-min-delta-negative", study_main, STUDY + " --min-delta -5", r"min_delta must be >= 0"),
    ("study-lr-nan", study_main, STUDY + " --lr .nan", r"train\.lr: expected a finite number"),
    ("study-config-duplicate-key", study_main, STUDY + " --config {ws}/configs/duplicate.yaml", r"duplicate key 'lr'"),
    ("study-report-faces-negative", study_main, STUDY + " --set report_options.faces=-1", r"report_options: faces must be >= 0"),
    ("study-name-too-long", study_main, "--preset smoke --data {ws}/data/fer2013.csv --storage {ws}/studies --name " + "n" * 300,
     r"name is 300 characters long; use at most 100"),
    ("study-resume-name-too-long", study_main, "--storage {ws}/studies --resume --name " + "n" * 300, r"name is 300 characters long"),
    ("study-name-with-a-space", study_main, "--preset smoke --data {ws}/data/fer2013.csv --storage {ws}/studies --name 'my study'",
     r"name 'my study' may hold only letters, digits"),
    ("study-resume-unsigned-pickle", study_main, "--storage {ws}/studies --name sent-unsigned --resume",
     r"sent-unsigned/resume-manifest\.json is missing: .*python -m study\.signing"),
    ("study-resume-changed-pickle", study_main, "--storage {ws}/studies --name sent-changed --resume",
     r"sent-changed/tuner\.pkl changed after your driver closed study 'sent-changed'"),
    ("study-resume-unlisted-pickle", study_main, "--storage {ws}/studies --name sent-unlisted --resume",
     r"sent-unlisted/trial_1/error\.pkl is a pickle that resume-manifest\.json does not list"),
    ("study-report-unknown-option", study_main, STUDY + " --set report_options.colour=1", r"unknown setting\(s\) report_options\.colour"),
    # results
    ("report-not-a-study", report_main, "{ws}/not-a-study", r"not a study directory"),
    ("report-negative-faces", report_main, "{ws}/not-a-study --faces -1", r"--faces"),
    ("report-faces-nan", report_main, "{ws}/not-a-study --faces .nan", r"faces: expected a whole number"),
    ("report-bad-bm3d-condition", report_main, "{ws}/not-a-study --bm3d-conditions gauss:25,sp:x", r"sp:x"),
    ("compare-top-0", compare_main, "{ws}/not-a-study {ws}/not-a-study --top 0 --out {ws}/outputs/{case}", r"top must be >= 1"),
    ("compare-one-study", compare_main, "{ws}/not-a-study --out {ws}/outputs/{case}", r"nothing to compare it with"),
    ("compare-overwrite-a-run", compare_main, "{ws}/not-a-study {ws}/studies --out {ws}/runs/done --overwrite", r"was not written by this program"),
    ("compare-overwrite-user-folder", compare_main, "{ws}/not-a-study {ws}/studies --out {ws}/inputs --overwrite", r"was not written by this program"),
    ("compare-out-is-an-input", compare_main, "{ws}/not-a-study {ws}/studies --out {ws}/not-a-study --overwrite", r"holds the input"),
    ("compare-out-holds-an-input", compare_main, "{ws}/not-a-study {ws}/studies --out {ws} --overwrite", r"holds the input"),
    ("compare-overwrite-a-file", compare_main, "{ws}/not-a-study {ws}/studies --out {ws}/a-file --overwrite", r"a-file is a file"),
    ("showcase-box-without-image", showcase_main, "--box 1,2,3 --out {ws}/outputs/{case}.png", r"--box needs --image"),
    # the red team's inputs: data, model files, devices, configs and trial tables said for what they are
    ("data-header-only", train_main, "--data {ws}/data/header-only.csv --out {ws}/runs/{case}", r"header-only\.csv: holds no faces \(a header only"),
    ("data-no-training", train_main, "--data {ws}/data/no-training.csv --out {ws}/runs/{case}", r"no-training\.csv: holds no Training faces"),
    ("data-utf16", train_main, "--data {ws}/data/utf16.csv --out {ws}/runs/{case}", r"utf16\.csv is UTF-16 text; save it as UTF-8"),
    ("data-tar-named-csv-gz", train_main, "--data {ws}/data/archive.csv.gz --out {ws}/runs/{case}", r"archive\.csv\.gz is a tar archive; name it \.tar\.gz"),
    ("data-gzip-twice", train_main, "--data {ws}/data/twice.csv.gz --out {ws}/runs/{case}", r"twice\.csv\.gz is gzip inside gzip"),
    ("data-fifo", train_main, "--data {ws}/data/pipe.csv --out {ws}/runs/{case}", r"pipe\.csv is not a regular file"),
    ("data-device-file", train_main, "--data /dev/null --out {ws}/runs/{case}", r"/dev/null is not a regular file"),
    ("study-data-fifo", study_main, "--preset smoke --data {ws}/data/pipe.csv --storage {ws}/studies --name {case}", r"pipe\.csv is not a regular file"),
    ("denoise-model-is-a-run-folder", denoise_main, "--model {ws}/runs/done {ws}/inputs/face.png {ws}/outputs/{case}.png",
     r"done is a directory, not a model file; did you mean .*done/model\.pt\?"),
    ("denoise-model-is-a-folder", denoise_main, "--model {ws}/inputs {ws}/inputs/face.png {ws}/outputs/{case}.png", r"inputs is a directory"),
    ("denoise-model-is-a-recipe", denoise_main, "--model {ws}/configs/lr-abc.yaml {ws}/inputs/face.png {ws}/outputs/{case}.png",
     r"lr-abc\.yaml is a recipe .*python -m denoise_core\.train --config .*lr-abc\.yaml --out RUN"),
    ("train-init-is-a-recipe", train_main, TRAIN + " --init {ws}/configs/lr-abc.yaml", r"is a recipe \(a YAML config\), not a model"),
    ("train-device-tpu", train_main, TRAIN + " --device tpu", r"unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
    ("train-device-meta", train_main, TRAIN + " --device meta", r"unknown device 'meta'"),
    ("denoise-device-tpu", denoise_main, D + " --device tpu {ws}/inputs/face.png {ws}/outputs/{case}.png", r"unknown device 'tpu'"),
    ("train-config-nested", train_main, TRAIN + " --config {ws}/configs/nested.yaml", r"nested\.yaml: nested too deeply"),
    ("train-config-latin1", train_main, TRAIN + " --config {ws}/configs/latin1.yaml", r"latin1\.yaml is not UTF-8 text \(byte 0xe9"),
    ("study-config-nested", study_main, STUDY + " --config {ws}/configs/nested.yaml", r"nested\.yaml: nested too deeply"),
    ("study-config-latin1", study_main, STUDY + " --config {ws}/configs/latin1.yaml", r"latin1\.yaml is not UTF-8"),
    ("report-trials-cut-mid-row", report_main, "{ws}/damaged/cut", r"cut/trials\.csv is damaged: line 3 has 2 fields"),
    ("report-trials-no-id", report_main, "{ws}/damaged/no-id", r"no-id/trials\.csv is damaged: no trial_id column"),
    ("report-trials-not-csv", report_main, "{ws}/damaged/binary", r"binary/trials\.csv is damaged: it is not CSV text"),
    ("compare-trials-cut-mid-row", compare_main, "{ws}/damaged/cut {ws}/damaged/cut --out {ws}/outputs/{case}", r"cut/trials\.csv is damaged"),
    # the findings document
    ("findings-experiments-not-a-folder", findings_main, F + " --experiments {ws}/a-file --out {ws}/outputs/{case}.md", r"a-file is not a folder"),
    ("findings-model-missing", findings_main, "--model {ws}/models/nowhere.pt --data {ws}/data/fer2013.csv --out {ws}/outputs/{case}.md",
     r"nowhere\.pt does not exist"),
    ("findings-model-crafted", findings_main, "--model {ws}/models/crafted.pt --data {ws}/data/fer2013.csv --out {ws}/outputs/{case}.md", r"was refused"),
    ("findings-faces-1", findings_main, F + " --faces 1 --out {ws}/outputs/{case}.md", r"--faces must be at least 2"),
    ("findings-out-exists", findings_main, F + " --out {ws}/inputs/notes.txt", r"notes\.txt exists; refusing to overwrite it"),
    ("findings-overwrite-a-user-file", findings_main, F + " --out {ws}/inputs/notes.txt --overwrite", r"was not written by this program as findings"),
    ("findings-out-is-a-folder", findings_main, F + " --out {ws}/inputs --overwrite", r"inputs is a directory"),
    # an empty noise alternative would leave a share of the faces clean, wherever a spec is read
    ("train-noise-empty-alternative", train_main, TRAIN + " --noise 'sp:0.1|'", r"bad noise spec 'sp:0\.1\|': alternative 2 of 2 is empty"),
    ("train-val-noise-empty-alternative", train_main, TRAIN + " --val-noise '|sp:0.1'", r"alternative 1 of 2 is empty"),
    ("study-noise-empty-alternative", study_main, STUDY + " --noise 'sp:0.1||gauss:5'", r"alternative 2 of 3 is empty"),
    ("study-searched-noise-empty-alternative", study_main, STUDY + " --set 'search.noise={{choice: [sp:0.1, \"sp:0.2|\"]}}'",
     r"'noise' value 'sp:0\.2\|'.*alternative 2 of 2 is empty"),
    ("study-holdout-alternative", study_main, STUDY + " --set 'holdout_conditions=[\"sp:0.1|\"]'", r"holdout_conditions: .*choice between kinds"),
    ("report-bm3d-empty-alternative", report_main, "{ws}/not-a-study --bm3d-conditions 'gauss:25,sp:0.1|'", r"bm3d_conditions: .*alternative 2 of 2 is empty"),
    # a setting set by two groups that one trial chooses together: trained with one value, recorded with the other
    ("study-search-sibling-groups", study_main, STUDY + " --set 'search.output={{choice: {{a: {{model.skip: true}}}}}}' "
     "--set 'search.stage={{choice: {{b: {{model.skip: false}}}}}}'", r"'model\.skip' is set by both search\.output\.a and search\.stage\.b"),
    # an init model is loaded before Ray starts: a bad one would fail every trial
    ("study-init-is-a-recipe", study_main, STUDY + " --set train.init={ws}/configs/lr-abc.yaml", r"train\.init: .*lr-abc\.yaml is a recipe"),
    ("study-init-damaged", study_main, STUDY + " --set train.init={ws}/models/truncated.pt", r"train\.init: .*truncated\.pt is damaged"),
    ("study-init-crafted", study_main, STUDY + " --set train.init={ws}/models/crafted.pt", r"train\.init: .*crafted\.pt was refused"),
    ("study-init-a-folder", study_main, STUDY + " --set train.init={ws}/runs/done", r"train\.init: model .*done is a directory"),
    ("study-searched-init-foreign", study_main, STUDY + " --set 'search.init={{choice: [{ws}/models/model.pt, {ws}/models/foreign.pt]}}'",
     r"train\.init: .*foreign\.pt is not a facestudy checkpoint"),
]


def test_text_flags_are_taken_as_written(ws):
    from study.run import parse_args, resolve

    config = resolve(*parse_args(shlex.split(STUDY.format(ws=ws, case="x")) + ["--name", "2026-12-01", "--device", "0"]))
    assert config.name == "2026-12-01" and config.train.device == "0"
    dated = ws / "configs" / "dated.yaml"
    dated.write_text("name: 2026-12-01\n")
    assert resolve(*parse_args(["--preset", "smoke", "--config", str(dated)])).name == "2026-12-01"  # no dates in YAML 1.2


def test_the_name_defaults_to_the_presets_name_as_help_says(capsys):
    from study.run import parse_args, resolve

    with pytest.raises(SystemExit):
        study_main(["--help"])
    assert "the preset's name" in " ".join(capsys.readouterr().out.split())
    for preset in ("smoke", "local", "workstation", "full"):
        assert resolve(*parse_args(["--preset", preset])).name == preset


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("case", "main", "argv", "message"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_changes_nothing(ws, capsys, case, main, argv, message):
    before = snapshot(ws)
    with pytest.raises(SystemExit) as exit_info:
        main(shlex.split(argv.format(ws=ws, case=case)))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert re.search(message, err), err
    after = snapshot(ws)
    assert {name: digest for name, digest in after.items() if name in before} == before
    assert not (ws / PAYLOAD_MARKER).exists()


def test_a_second_driver_of_the_same_study_is_refused_before_ray_starts_naming_the_first(ws, capsys):
    from study.lock import study_lock

    with study_lock(str(ws / "studies" / "held")):
        with pytest.raises(SystemExit) as exit_info:
            study_main(shlex.split(STUDY.format(ws=ws, case="held")))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.count("\n") == 0, err
    assert f"study 'held' is being run by another driver (pid {os.getpid()}" in err and "--resume" in err, err
    assert not (ws / "studies" / "held").exists()
    with study_lock(str(ws / "studies" / "held")):  # released when the first driver ends, even after a kill
        pass


def test_the_catalogue_is_at_least_forty_inputs_across_every_command():
    assert len(CASES) >= 40
    assert {main for _, main, _, _ in CASES} == {train_main, denoise_main, study_main, report_main, compare_main, showcase_main, findings_main}


@pytest.mark.parametrize("bug", [ValueError("a bug"), KeyError("x"), TypeError("y"), FileNotFoundError("internal")])
def test_a_bug_keeps_its_traceback(bug):
    def broken():
        raise bug

    with pytest.raises(type(bug)):
        run_cli(broken, "prog")


def test_a_retry_after_a_failed_start_reuses_the_run_directory(ws, capsys):
    out = ws / "runs" / "retry"
    argv = TRAIN.format(ws=ws, case="retry").split()
    with pytest.raises(SystemExit) as failed:
        train_main([*argv, "--lr", "1e30"])
    assert failed.value.code == 2 and (out / "config.yaml").exists() and not (out / "last.pt").exists()
    with pytest.raises(SystemExit) as nothing:
        train_main([*argv, "--resume"])
    assert nothing.value.code == 2 and "start it again without --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit) as retried:
        train_main(argv)
    assert retried.value.code == 0 and (out / "last.pt").exists()


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(ws, capsys, monkeypatch):
    import denoise_core.files

    def no_space(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if "w" in mode and ".pt." in Path(path).name:
            def write(data):
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            handle.write = write
        return handle

    monkeypatch.setattr(denoise_core.files, "open", no_space, raising=False)
    out = ws / "runs" / "disk-full"
    with pytest.raises(SystemExit) as exit_info:
        train_main(TRAIN.format(ws=ws, case="disk-full").split())
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.count("\n") == 0
    assert re.search(r"no space left on the device mounted at .* \(writing .*last\.pt, which needs \d+\.\d [kM]B with .* free\)", err), err
    assert not list(out.glob("*.partial")) and not (out / "last.pt").exists()


def test_more_faces_asked_than_there_are_is_said(ws, caplog):
    caplog.set_level("WARNING")
    argv = TRAIN.format(ws=ws, case="many-faces").replace("--train-size 32", "--train-size 5000").split()
    with pytest.raises(SystemExit) as exit_info:
        train_main([*argv, "--val-size", "900"])
    assert exit_info.value.code == 0
    assert "train_size 5000 is more than the 40 training faces" in caplog.text
    assert "val_size 900 is more than the 10 validation faces" in caplog.text
