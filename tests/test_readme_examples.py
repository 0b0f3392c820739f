"""The README's examples that use the first command's study run as written, against a smoke study of the same name."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import QUIET_RAY
from study.config import build_config
from study.study import run_study
from synthetic import smooth_faces

REPO = Path(__file__).resolve().parents[1]


SERVERS = ("study.dashboard",)  # serve until stopped; tests/test_optuna_storage.py starts, reads and stops it


def readme_examples(first_study: str = "studies/local") -> list[str]:
    """Every ``python ...`` line of the README's code blocks that reads the first command's study and then ends."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("python ") and first_study in line and not any(s in line for s in SERVERS)]


def test_the_readme_has_examples_for_the_first_commands_study():
    examples = readme_examples()
    assert any("results.report" in line for line in examples) and any("denoise_core.denoise" in line for line in examples)


@pytest.mark.slow
def test_readme_examples_run_as_written_after_the_first_command(study_env, tmp_path):
    data = study_env["data"]
    for name in ("local", "full"):  # the README compares the first command's study with a full one
        run_study(build_config("smoke", assignments=[("name", name), ("storage", str(tmp_path / "studies")), ("data", str(data))]))
    (tmp_path / "faces").mkdir()
    for index, face in enumerate(smooth_faces(3)):
        Image.fromarray(face).save(tmp_path / "faces" / f"{index}.png")
    np.save(tmp_path / "faces.npy", smooth_faces(3))
    env = {**os.environ, **QUIET_RAY, "FER2013_PATH": str(data)}
    for example in readme_examples():
        command = [sys.executable if word == "python" else word for word in shlex.split(example)]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{example}\n{result.stderr[-1500:]}"
