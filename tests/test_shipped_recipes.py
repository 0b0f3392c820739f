"""Every shipped model can be made again from the files beside it: each recipe (``models/**/NAME.yaml``) and study
file (``NAME.study.yaml``) builds through the one config pipeline, each warm start names a model file in the
repository that fits the recipe's architecture, and each shipped model was trained with its recipe's model block."""

from pathlib import Path

import pytest

from denoise_core.checkpoint import load_checkpoint
from denoise_core.model import ConvAutoencoder, model_config_from_dict
from denoise_core.settings import load_yaml_file
from denoise_core.fit import config_from_dict, load_initial_weights
from denoise_core.train import resolve_config
from study.config import build_config

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
RECIPES = sorted(path for path in MODELS.rglob("*.yaml") if not path.name.endswith(".study.yaml"))
STUDIES = sorted(MODELS.rglob("*.study.yaml"))


def name(path: Path) -> str:
    return str(path.relative_to(MODELS))


def test_every_model_file_has_a_recipe_and_a_study():
    models = sorted(MODELS.rglob("*.pt"))
    assert len(models) >= 4
    for model in models:
        assert model.with_suffix(".yaml") in RECIPES, name(model)
        assert model.with_suffix(".study.yaml") in STUDIES, name(model)


@pytest.mark.parametrize("recipe", RECIPES, ids=name)
def test_recipe_builds_and_its_warm_start_fits(recipe, monkeypatch):
    monkeypatch.chdir(ROOT)  # a recipe's init is relative to the repository root, where the card runs it
    config = resolve_config(load_yaml_file(recipe), [])
    shipped = load_checkpoint(recipe.with_suffix(".pt"))
    assert config.precision == config_from_dict(shipped["config"]).precision == "fp32"  # pinned: the replay stays bit-identical
    assert model_config_from_dict(shipped["config"]["model"]) == config.model
    if config.init:
        assert Path(config.init).resolve().is_relative_to(MODELS) and Path(config.init).resolve() != recipe.with_suffix(".pt")
        load_initial_weights(ConvAutoencoder(config.model), config)


@pytest.mark.parametrize("study_file", STUDIES, ids=name)
def test_study_file_builds_over_the_workstation_preset_and_its_recipe_is_one_of_its_trials(study_file, monkeypatch):
    monkeypatch.chdir(ROOT)
    study = build_config("workstation", str(study_file))
    assert not study.revoke_promotions and study.grow_trials  # as they ran, before the preset changed both
    recipe = resolve_config(load_yaml_file(study_file.with_name(study_file.name.replace(".study", ""))), [])
    for setting in ("noise", "val_noise", "loss", "epochs", "train_size", "val_size", "val_unique", "init", "precision"):
        if setting not in study.search:
            assert getattr(recipe, setting) == getattr(study.train, setting) or (
                setting == "init" and (ROOT / recipe.init).resolve() == Path(study.train.init)), setting


@pytest.mark.parametrize("recipe", RECIPES, ids=name)
def test_every_shipped_recipe_validates_on_the_faces_it_was_trained_with(recipe):
    """Trained before the copies of Training faces left validation: a replay must validate on every PublicTest face."""
    assert load_yaml_file(recipe)["val_unique"] is False
