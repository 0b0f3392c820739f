"""The search-space language: every kind of entry, conditional options, one-line errors, and sampled configs that train."""

import optuna
import pytest

from denoise_core.fit import fit
from denoise_core.settings import to_dict
from denoise_core.space import SearchSpaceError, assignments, branches, check_space, parameters, searched_settings
from study.config import StudyConfigError, build_config, searchable_settings, trial_config
from study.space import sampler_for
from synthetic import smooth_splits

SPACE = {
    "lr": {"loguniform": [0.001, 0.01]},
    "model.dropout": {"uniform": [0.0, 0.2]},
    "epochs": {"randint": [1, 3]},
    "loss": {"choice": ["mse", "psnr"]},
    "output": {"choice": {
        "plain": {},
        "gate": {"model.gate": True, "model.mask_input": True},
        "switching": {"model.switching": True, "model.mask_input": {"choice": [False, True]}},
    }},
    "refinement": {"choice": {"none": {"model.refine": 0}, "stage": {"model.refine": 2, "model.refine_width": {"choice": [4, 8]}}}},
}


def sampled_trials(space, count, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trials = []
    for _ in range(count):
        trial = study.ask()
        sampler_for(space)(trial)
        trials.append(trial.params)
        study.tell(trial, 0.0)
    return trials


def test_define_by_run_samples_only_the_chosen_options_parameters():
    check_space(SPACE, searchable_settings())
    seen = set()
    for params in sampled_trials(SPACE, 40):
        seen.add((params["output"], params["refinement"]))
        assert ("model.mask_input" in params) == (params["output"] == "switching")
        assert ("model.refine_width" in params) == (params["refinement"] == "stage")
        assert 1 <= params["epochs"] <= 2 and isinstance(params["epochs"], int)
        assert 0.001 <= params["lr"] <= 0.01 and params["loss"] in ("mse", "psnr")
        settings = dict(assignments(SPACE, params))
        if params["output"] == "gate":
            assert settings["model.gate"] is True and settings["model.mask_input"] is True and "model.switching" not in settings
        if params["refinement"] == "none":
            assert settings["model.refine"] == 0 and "model.refine_width" not in settings
    assert len(seen) == 6  # every combination of options came up


def test_sampled_configs_really_train():
    base = to_dict(build_config("smoke").train)
    base.update(train_size=32, val_size=8, batch_size=8, model={**base["model"], "base_width": 4, "bottleneck_size": 4})
    data = smooth_splits(40, 8, 4)
    for params in sampled_trials(SPACE, 4, seed=3):
        config = trial_config(base, assignments(SPACE, params))
        result = fit(config, data)
        assert result.history[-1]["val_psnr"] > result.history[-1]["noisy_psnr"] - 10
        assert config.epochs == params["epochs"] and config.model.gate == (params["output"] == "gate")


def test_branches_list_every_option_path_with_its_fixed_and_sampled_settings():
    paths = {label: (dict(fixed), set(sampled)) for label, fixed, sampled in branches(SPACE)}
    assert len(paths) == 6
    fixed, sampled = paths["output=switching, refinement=stage"]
    assert fixed == {"model.switching": True, "model.refine": 2}
    assert {"model.mask_input", "model.refine_width", "lr"} <= sampled
    assert searched_settings(SPACE) >= {"model.gate", "model.switching", "model.mask_input", "model.refine", "lr"}
    assert parameters(SPACE)["output"] == {"choice": ["plain", "gate", "switching"]}
    assert parameters(SPACE)["model.refine_width"] == {"choice": [4, 8]}


@pytest.mark.parametrize("space, message", [
    ({"lr": 0.1}, "a searched setting needs one of choice, uniform, loguniform, randint"),
    ({"lr": {"uniform": [0.1]}}, r"uniform needs \[low, high\]"),
    ({"lr": {"uniform": [0.2, 0.1]}}, "low < high"),
    ({"lr": {"loguniform": [0.0, 0.1]}}, "positive low bound"),
    ({"epochs": {"randint": [1.5, 3]}}, "randint needs whole numbers"),
    ({"loss": {"choice": []}}, "non-empty list"),
    ({"loss": {"choice": ["mse", "mse"]}}, "lists a value twice"),
    ({"model.widht": {"choice": [1]}}, "unknown setting 'model.widht'"),
    ({"output": {"choice": ["a", "b"]}}, "unknown setting 'output'"),
    ({"output": {"choice": {}}}, "at least one option"),
    ({"output": {"choice": {"a": 3}}}, "an option is a mapping"),
    ({"output": {"choice": {"a": {"model.gate": {"maybe": [1]}}}}}, "needs one of choice"),
    ({"lr": {"choice": [0.1]}, "g": {"choice": {"a": {"lr": 0.2}}}}, "'lr' is set twice on one path"),
    ({"g": {"choice": {"a": {"lr": {"choice": [0.1]}}, "b": {"lr": {"choice": [0.2]}}}}}, "use the same distribution everywhere"),
    ({"g": {"choice": {"a": {}}}, "h": {"choice": {"x": {"g": {"choice": {"b": {}}}}}}}, "the group name 'g' is used twice"),
    ({"g": {"choice": {"a": {"model.dropout": 0.1}}}, "h": {"choice": {"b": {"model.dropout": 0.2}}}},
     r"'model.dropout' is set by both search\.g\.a and search\.h\.b, which one trial can choose together"),
    ({"g": {"choice": {"a": {}, "b": {"lr": {"choice": [0.1]}}}}, "h": {"choice": {"c": {"lr": {"choice": [0.1]}}}}},
     r"'lr' is set by both search\.g\.b and search\.h\.c"),
    ({"g": {"choice": {"a": {"model.skip": True, "h": {"choice": {"b": {"model.skip": False}}}}}}},
     r"'model.skip' is set by both search\.g\.a and search\.g\.a\.h\.b"),
])
def test_bad_search_spaces_are_one_line_errors(space, message):
    with pytest.raises(SearchSpaceError, match=message) as error:
        check_space(space, searchable_settings())
    assert "\n" not in str(error.value)


def test_options_of_one_group_may_each_set_a_setting_as_no_trial_chooses_two():
    space = {"g": {"choice": {"a": {"model.dropout": 0.1}, "b": {"model.dropout": 0.2}}}, "h": {"choice": {"c": {"lr": {"choice": [0.1]}}}}}
    check_space(space, searchable_settings())
    assert [dict(fixed) for _, fixed, _ in branches(space)] == [{"model.dropout": 0.1}, {"model.dropout": 0.2}]


def test_every_value_on_every_path_is_checked_against_the_studys_own_settings():
    gate_and_switching = {"output": {"choice": {"gate": {"model.gate": True}, "switching": {"model.switching": True}}}}
    build_config("smoke", assignments=[("search", gate_and_switching)])  # each option alone is valid
    with pytest.raises(StudyConfigError, match=r"search \(output=switching\): .*gate and switching are two kinds of output"):
        build_config("smoke", assignments=[("search", gate_and_switching), ("train.model.gate", True)])
    with pytest.raises(StudyConfigError, match=r"'model.dropout' value 3.0 .*dropout must be in \[0, 1\)"):
        build_config("smoke", assignments=[("search.model.dropout", {"uniform": [0.9, 3.0]})])
    with pytest.raises(StudyConfigError, match=r"'model.refine' value 1 \(output=plain, refinement=stage\): model: refine must be 0 \(off\) or at least 2"):
        build_config("smoke", assignments=[("search.refinement", {"choice": {"none": {}, "stage": {"model.refine": {"choice": [1, 2]}}}})])


def test_presets_search_conditional_spaces_that_validate():
    for preset in ("smoke", "local", "workstation", "full"):
        config = build_config(preset)
        assert config.search and list(branches(config.search))
    full = build_config("full")
    assert {"output", "refinement", "model.refine_width", "model.mirror"} <= set(parameters(full.search))
    assert "switching" in parameters(full.search)["output"]["choice"]
