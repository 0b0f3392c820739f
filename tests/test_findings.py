"""The seed's findings with intervals (results/analysis/evidence.py) against known cases, and the command that writes
docs/findings.md (results/findings.py) on tiny synthetic faces and tiny fake experiment directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from denoise_core.baselines import switching_median
from denoise_core.checkpoint import export_model, save_checkpoint
from denoise_core.data import write_csv
from denoise_core.fit import TrainConfig, fit
from denoise_core.holdout import Holdout, make_holdout
from denoise_core.model import ConvAutoencoder, ModelConfig
from denoise_core.settings import to_dict
from results.analysis import Evidence, LevelModels, filled_in_experiments, measured, misalignment, overall, region_errors
from results.analysis.common import PREFERRED_CONDITIONS
from results.findings import main as findings_main
from results.output import MARKER
from results.statistics import Interval, bootstrap_statistic, paired_bootstrap
from synthetic import smooth_faces, smooth_splits, smooth_usage

FACES = 16


@pytest.fixture(scope="module")
def holdout() -> Holdout:
    return make_holdout(smooth_faces(FACES, seed=3), PREFERRED_CONDITIONS, seed=7)


def evidence(estimate: float, low: float, high: float, threshold: float = 0.0, seeds: int = 3, **details) -> Evidence:
    return Evidence("the gap", Interval(estimate, low, high, seeds), threshold, True, faces=40, **details)


def test_interval_of_per_face_values_contains_their_known_mean():
    rng = np.random.default_rng(4)
    one = measured(rng.normal(0.3, 1.0, 400), "a gap", 0.0, True)
    assert one.interval.low < 0.3 < one.interval.high and one.interval.n == 1 and one.faces == 400
    assert 0.15 < one.interval.high - one.interval.low < 0.25  # about 2 x 1.96 / sqrt(400)
    seeds = rng.normal(0.3, 1.0, (3, 400)) + rng.normal(0.0, 0.05, (3, 1))
    three = measured(seeds, "a gap", 0.0, True)
    assert three.interval.low < 0.3 < three.interval.high and three.interval.n == 3


def test_faces_missing_for_any_seed_are_left_out():
    values = np.array([[1.0, np.nan, 3.0, 5.0], [1.0, 2.0, np.inf, 5.0]])
    kept = measured(values, "a gap", 0.0, True)
    assert kept.faces == 2 and kept.interval.estimate == pytest.approx(3.0)


def test_verdicts_are_never_stronger_than_the_interval():
    assert evidence(0.5, 0.2, 0.8).supported is True and evidence(0.5, 0.2, 0.8).outcome() == "supported"
    assert evidence(-0.5, -0.8, -0.2).supported is False and "not supported" in evidence(-0.5, -0.8, -0.2).verdict()
    undecided = evidence(0.1, -0.2, 0.4, between=("width 8", "width 24"))
    assert undecided.supported is None and undecided.outcome() == "do not differ"
    assert undecided.verdict().startswith("width 8 and width 24 do not differ at n = 3 models, 40 faces")
    straddles = evidence(3.2, 2.5, 3.9, threshold=3.0)
    assert straddles.supported is None and straddles.outcome() == "cannot tell" and "includes 3" in straddles.verdict()
    assert "face-to-face variation only" in evidence(0.5, 0.2, 0.8, seeds=1).verdict()
    assert evidence(0.5, float("nan"), float("nan")).supported is None


def test_a_finding_rests_on_its_headline_evidence():
    yes, no, unsure = evidence(0.5, 0.2, 0.8), evidence(-0.5, -0.8, -0.2), evidence(0.1, -0.2, 0.4)
    aside = evidence(-0.5, -0.8, -0.2, headline=False)
    assert overall([yes, aside]) is True and overall([yes, no]) is False and overall([yes, unsure]) is None
    assert overall([unsure, no]) is False and overall([aside]) is None and overall([]) is None


def test_bootstrap_of_a_statistic_agrees_with_the_paired_bootstrap_for_a_mean():
    values = np.random.default_rng(5).normal(1.0, 2.0, (1, 300))
    mean = bootstrap_statistic(lambda s, f: values[s[:, :, None], f[:, None, :]].reshape(len(s), -1).mean(axis=1), 1, 300)
    paired = paired_bootstrap(values, np.zeros_like(values))
    assert mean.estimate == pytest.approx(paired.estimate)
    assert mean.low == pytest.approx(paired.low, abs=0.05) and mean.high == pytest.approx(paired.high, abs=0.05)


def mixing(clean: np.ndarray, template: np.ndarray, weight: float):
    return lambda noisy: ((1 - weight) * clean[:len(noisy)] + weight * template).astype(np.float32)


def test_a_model_compared_with_itself_does_not_differ(holdout: Holdout):
    same = {"8": {0: switching_median, 1: switching_median}, "24": {0: switching_median, 1: switching_median}}
    finding = filled_in_experiments([LevelModels("width", "under-parameterised", same)], holdout)
    (contrast,) = finding.evidence
    assert (contrast.interval.estimate, contrast.interval.low, contrast.interval.high) == (0.0, 0.0, 0.0)
    assert contrast.outcome() == "do not differ" and contrast.verdict().startswith("width 8 and width 24 do not differ")
    assert finding.supported is None and finding.verdict == "cannot tell at this n"


def test_filled_in_experiments_find_the_level_that_pulls_toward_the_mean_face(holdout: Holdout):
    clean = holdout.clean.astype(np.float32) / 255.0
    template = clean.mean(axis=0)

    def levels(first: float, last: float) -> dict:
        return {"8": {s: mixing(clean, template, first + 0.01 * s) for s in range(3)}, "24": {s: mixing(clean, template, last + 0.01 * s) for s in range(3)}}

    narrow = LevelModels("width", "under-parameterised", levels(0.4, 0.1))
    early = LevelModels("epochs", "stopped early", levels(0.3, 0.05))
    finding = filled_in_experiments([narrow, early], holdout, template=template)
    assert [e.interval.estimate for e in finding.evidence] == pytest.approx([0.3, 0.25])
    assert finding.supported is True and all(e.interval.n == 3 for e in finding.evidence)
    assert list(finding.table.pull) == pytest.approx([0.41, 0.11, 0.31, 0.06])
    reversed_width = LevelModels("width", "under-parameterised", levels(0.1, 0.4))
    assert filled_in_experiments([reversed_width, early], holdout, template=template).supported is False


def test_replicates_widen_the_evidence_to_several_models(holdout: Holdout):
    clean = holdout.clean.astype(np.float32) / 255.0
    oracle = lambda noisy: clean[:len(noisy)].copy()  # noqa: E731
    finding = region_errors({"oracle": oracle}, holdout, ("sp:0.3", "sp:0.5"), replicates=[oracle, oracle])
    assert {e.interval.n for e in finding.evidence} == {3} and finding.supported is True
    identity = misalignment({"identity": lambda noisy: noisy.copy()}, holdout, replicates=[lambda noisy: noisy.copy()])
    net = identity.evidence[0]
    assert (net.interval.estimate, net.interval.low, net.interval.high) == (0.0, 0.0, 0.0) and identity.supported is False


# The command, on fake experiment directories: trials with checkpoints of tiny untrained models and known per-face scores.

def tiny_checkpoint(exported: dict, width: int, seed: int) -> dict:
    torch.manual_seed(seed)
    config = ModelConfig(base_width=width, bottleneck_size=8)
    return {**exported, "config": {**exported["config"], "model": to_dict(config)}, "model_state": ConvAutoencoder(config).state_dict()}


def fake_experiment(root: Path, name: str, factor: str, levels: list[int], exported: dict, gain: float) -> None:
    """An experiment directory whose second level scores ``gain`` dB above the first on every face and seed."""
    path = root / name
    trials, scores = [], []
    for index, level in enumerate(levels):
        for seed in (0, 1):
            trial_id = f"{name}{level}s{seed}"
            checkpoint = path / f"trial_{trial_id}" / "checkpoint_000000"
            checkpoint.mkdir(parents=True)
            save_checkpoint(tiny_checkpoint(exported, 4 if factor == "epochs" else level, seed + 10 * index), checkpoint / "checkpoint.pt")
            trials.append({"trial_id": trial_id, "level": str(level), "value": str(level), "seed": seed, "status": "completed", "checkpoint": str(checkpoint)})
            for condition in ("sp:0.1", "sp:0.5"):
                psnr = 25.0 + gain * index + np.linspace(-1, 1, 10) + 0.01 * seed
                scores.append(pd.DataFrame({"trial_id": trial_id, "level": str(level), "seed": seed, "condition": condition, "face": np.arange(10),
                                            "psnr": psnr, "ssim": psnr / 40.0, "noisy_psnr": 15.0, "noisy_ssim": 0.3}))
    config = {"name": name, "question": f"What does {name} change?", "label": name, "factor": factor, "levels": levels, "names": [str(v) for v in levels],
              "seeds": [0, 1], "reference": "models/fer2013-blind.yaml", "base": {"epochs": 1, "train_size": 32, "val_size": 8, "noise": "sp:0.2"}}
    (path / "experiment.yaml").write_text(yaml.safe_dump(config))
    pd.DataFrame(trials).to_csv(path / "trials.csv", index=False)
    pd.concat(scores, ignore_index=True).to_parquet(path / "scores.parquet", index=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings")
    write_csv(root / "fer2013.csv", smooth_faces(66), smooth_usage(40, 10, 16))
    config = TrainConfig(model=ModelConfig(base_width=4, bottleneck_size=8), noise="sp:0.2", epochs=1, batch_size=16)
    exported = export_model(fit(config, smooth_splits(64, 16, 8)).checkpoint)
    save_checkpoint(exported, root / "model.pt")
    experiments = root / "experiments"
    fake_experiment(experiments, "width", "model.base_width", [4, 8], exported, gain=1.0)
    fake_experiment(experiments, "epochs", "epochs", [1, 2], exported, gain=0.0)
    (experiments / "unfinished").mkdir()
    (experiments / "unfinished" / "experiment.yaml").write_text("name: unfinished\n")
    return root


def regenerate(workspace: Path, out: Path, *extra: str) -> int:
    argv = ["--experiments", str(workspace / "experiments"), "--model", str(workspace / "model.pt"), "--data", str(workspace / "fer2013.csv"),
            "--out", str(out), "--faces", "12", *extra]
    with pytest.raises(SystemExit) as exit_info:
        findings_main(argv)
    return exit_info.value.code


def test_the_command_writes_every_section_and_names_itself(workspace: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FACESTUDY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "docs" / "findings.md"
    assert regenerate(workspace, out) == 0
    text = out.read_text()
    lines = text.splitlines()
    assert lines[0].startswith(f"<!-- {MARKER}: findings.") and lines[1] == "# What the experiments found"
    assert f"python -m results.findings --experiments {workspace / 'experiments'}" in text and text.count("--overwrite") >= 1
    for heading in ("## The seed's questions", "## Question: width", "## Question: epochs", "## The seed's findings, each with a number",
                    "## Finding: error by face region", "## Finding: over-smoothing by density", "## Finding: high- vs low-contrast pixels",
                    "## Finding: ssim vs psnr on eyes and mouth", "## Finding: misaligned faces", "## Finding: filled-in artefacts at dense impulse noise"):
        assert heading in text, heading
    assert "width 4 is worse than 8 by 1.00 dB [1.00, 1.00] at sp:0.1" in text
    assert "epochs 1 and 2 do not differ at sp:0.1" in text
    assert "unfinished: not finished" in text and "![" not in text  # no figure, so no face
    assert "pull toward the mean face of width 4 (under-parameterised) minus width 8" in text


def test_the_command_replaces_only_its_own_document(workspace: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("FACESTUDY_CACHE", str(tmp_path / "cache"))
    mine = tmp_path / "notes.md"
    mine.write_text("# my notes\n")
    assert regenerate(workspace, mine, "--overwrite") == 2 and mine.read_text() == "# my notes\n"
    assert "was not written by this program" in capsys.readouterr().err
    ours = tmp_path / "findings.md"
    ours.write_text(f"<!-- {MARKER}: findings. Generated -->\nold\n")
    assert regenerate(workspace, ours) == 2 and "exists; refusing" in capsys.readouterr().err
    assert regenerate(workspace, ours, "--overwrite") == 0 and "old" not in ours.read_text().splitlines()
