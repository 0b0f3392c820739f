"""What TensorBoard shows: the robustness curves one run per model and outside every study, and HParams values as the
search space wrote them (16, not 16.000)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from denoise_core.space import discrete_values
from denoise_core.tblog import write_hparams
from results.curves import CURVES_CSV, curve_row, main, write_tensorboard

MODELS = ("AE#1 aaaa0001", "median3", "switching_median")
CONDITIONS = ("none", "sp:0.1", "sp:0.5", "gauss:25", "sp:0.1+gauss:10")
SMOKE_SPACE = {"model.bottleneck_size": {"choice": [4, 8]}, "model.dropout": {"uniform": [0.0, 0.2]}, "loss": {"choice": ["mse", "mae"]},
               "lr": {"loguniform": [0.003, 0.01]},
               "output": {"choice": {"plain": {}, "gate": {"model.gate": True, "model.mask_input": {"choice": [False, True]}}}}}


def curves_table() -> pd.DataFrame:
    """Three models at five conditions; model m at condition c scores 20 + m + c/10 dB, the noisy input 10 + c/10."""
    rows = [curve_row(model, "learned" if m == 0 else "classical", condition,
                      {"psnr": 20.0 + m + c / 10, "ssim": 0.5 + m / 10, "ssim_gauss": 0.5, "noisy_psnr": 10.0 + c / 10, "noisy_ssim": 0.2,
                       "noisy_ssim_gauss": 0.2, "faces": 24, "seconds": 0.1})
            for c, condition in enumerate(CONDITIONS) for m, model in enumerate(MODELS)]
    return pd.DataFrame(rows)


def events(run_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_each_model_is_its_own_run_so_tensorboard_gives_each_its_own_colour(tmp_path):
    write_tensorboard(curves_table(), tmp_path)
    runs = {p.parent.name for p in tmp_path.rglob("*tfevents*")}
    assert runs == {"AE_1_aaaa0001", "median3", "switching_median", "noisy_input"}
    assert not list(tmp_path.glob("*tfevents*"))  # nothing in the log directory's own run
    median3 = events(tmp_path / "median3")
    assert [(e.step, round(e.value, 4)) for e in median3.Scalars("robustness/psnr_vs_sp")] == [(0, 21.0), (10, 21.1), (50, 21.2)]
    assert [(e.step, round(e.value, 4)) for e in median3.Scalars("robustness/psnr_vs_gauss")] == [(0, 21.0), (25, 21.3)]
    noisy = events(tmp_path / "noisy_input")
    assert [(e.step, round(e.value, 4)) for e in noisy.Scalars("robustness/psnr_vs_sp")] == [(10, 10.1), (50, 10.2)]  # no clean point


def test_the_custom_scalars_layout_has_one_chart_per_metric_and_kind_with_a_series_per_model(tmp_path):
    write_tensorboard(curves_table(), tmp_path)
    run_tags = {run.name: set(events(run).Tags()["scalars"]) for run in tmp_path.iterdir()}
    [config] = [events(run).Tensors("custom_scalars__config__") for run in tmp_path.iterdir() if "custom_scalars__config__" in events(run).Tags()["tensors"]]
    layout = layout_pb2.Layout.FromString(config[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert set(charts) == {f"{metric} vs {kind}" for metric in ("psnr", "ssim") for kind in ("sp", "gauss", "mixture")}
    for title, [pattern] in charts.items():
        matched = {(run, tag) for run, tags in run_tags.items() for tag in tags if re.search(pattern, tag)}
        assert {tag for _, tag in matched} == {f"robustness/{title.replace(' vs ', '_vs_')}"}
        assert {run for run, _ in matched} == set(run_tags)  # one series per model (and the noisy input), each in its run's colour


def test_the_curves_command_writes_outside_the_study_and_refuses_inside_it(tmp_path, capsys):
    study = tmp_path / "studies" / "tiny"
    (study / "report").mkdir(parents=True)
    (study / "study.yaml").write_text("name: tiny\n")
    curves_table().to_csv(study / "report" / CURVES_CSV, index=False)
    with pytest.raises(SystemExit) as exit_info:
        main([str(study / "report"), "--out", str(study / "report" / "tensorboard")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "inside the study" in error
    assert not list(study.rglob("*tfevents*"))

    out = tmp_path / "curves" / "tiny"
    with pytest.raises(SystemExit) as exit_info:
        main([str(study / "report"), "--out", str(out)])
    assert exit_info.value.code == 0 and f"tensorboard --logdir {out}" in capsys.readouterr().out
    assert {p.parent.name for p in out.rglob("*tfevents*")} == {"AE_1_aaaa0001", "median3", "switching_median", "noisy_input"}
    with pytest.raises(SystemExit) as exit_info:
        main([str(study / "report"), "--out", str(out)])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(study / "report"), "--out", str(out), "--overwrite"])
    assert exit_info.value.code == 0 and len(list(out.rglob("*tfevents*"))) == 4  # replaced, not added to


def test_a_directory_without_curves_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "has no curves.csv" in error and not (tmp_path / "out").exists()


def test_the_discrete_values_of_a_space_are_its_choices_and_groups_in_order():
    assert discrete_values(SMOKE_SPACE) == {"model.bottleneck_size": [4, 8], "loss": ["mse", "mae"], "output": ["plain", "gate"],
                                            "model.mask_input": [False, True]}


def hparams_written(run_dir) -> tuple[api_pb2.Experiment, plugin_data_pb2.SessionStartInfo]:
    accumulator = events(run_dir)
    read = {tag: plugin_data_pb2.HParamsPluginData.FromString(accumulator.summary_metadata[f"_hparams_/{tag}"].plugin_data.content)
            for tag in ("experiment", "session_start_info")}
    return read["experiment"].experiment, read["session_start_info"].session_start_info


def test_whole_numbers_and_booleans_are_written_as_text_and_fractions_as_numbers(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    params = {"model.bottleneck_size": 16, "lr": 0.003, "model.dropout": 0, "model.mask_input": True, "loss": "mse", "epochs": 12}
    write_hparams(writer, params, {"val_psnr": 30.0}, {"model.bottleneck_size": [4, 8, 16], "model.dropout": [0, 0.1], "model.mask_input": [False, True],
                                                        "loss": ["mse", "mae"]})
    writer.close()
    experiment, start = hparams_written(tmp_path)
    values = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
    assert values == {"model.bottleneck_size": "16", "lr": 0.003, "model.dropout": 0.0, "model.mask_input": "True", "loss": "mse", "epochs": "12"}
    infos = {info.name: info for info in experiment.hparam_infos}
    domain = {name: [getattr(v, v.WhichOneof("kind")) for v in info.domain_discrete.values] for name, info in infos.items()}
    assert domain == {"model.bottleneck_size": ["4", "8", "16"], "lr": [], "model.dropout": [0.0, 0.1], "model.mask_input": ["False", "True"],
                      "loss": ["mse", "mae"], "epochs": []}
    assert infos["model.bottleneck_size"].type == api_pb2.DATA_TYPE_STRING and infos["lr"].type == api_pb2.DATA_TYPE_FLOAT64
