"""The models the GPU check trains: the smallest, default and largest of the ``full`` search."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from bench import REPO_ROOT
from denoise_core.model import ModelConfig, model_config_from_dict

FULL_PRESET = REPO_ROOT / "study" / "presets" / "full.yaml"

SMALLEST = ModelConfig(stages=2, base_width=16, bottleneck="channels", bottleneck_size=8, dropout=0.1, skip=False, mask_input=False, gate=False)
LARGEST = ModelConfig(stages=4, base_width=64, bottleneck="dense", bottleneck_size=128, skip=True, mask_input=True, gate=True,
                      refine=6, refine_width=32, mirror=True)


def search_models(preset: dict[str, Any]) -> dict[str, ModelConfig]:
    """The default first: when the budget runs short, the compiled rows that go are the extremes'."""
    return {"default": model_config_from_dict(preset["train"]["model"]), "smallest": SMALLEST, "largest": LARGEST}


def describe(model_config: ModelConfig) -> str:
    changed = [f"{f.name}={getattr(model_config, f.name)}" for f in fields(ModelConfig) if getattr(model_config, f.name) != f.default]
    return ", ".join(changed) or "defaults"

