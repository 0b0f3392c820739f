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

from study.config import build_config
from study.study import run_study
from synthetic import smooth_faces

REPO = Path(__file__).resolve().parents[1]
QUIET_RAY = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}


def readme_examples(first_study: str = "studies/local") -> list[str]:
    """Every ``python ...`` line of the README's code blocks that reads the first command's study."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("python ") and first_study in line]


def test_the_readme_has_examples_for_the_first_commands_study():
    examples = readme_examples()
    assert any("results.report" in line for line in examples) and any("denoise_core.denoise" in line for line in examples)


@pytest.mark.slow
def test_readme_examples_run_as_written_after_the_first_command(tmp_path, fer2013_slice):
    ray = pytest.importorskip("ray")
    data = tmp_path / "fer2013-slice.csv"
    data.write_bytes(fer2013_slice)
    env = {**os.environ, **QUIET_RAY, "FACESTUDY_CACHE": str(tmp_path / "cache"), "FER2013_PATH": str(data)}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for name in ("local", "full"):  # the README compares the first command's study with a full one
            run_study(build_config("smoke", assignments=[("name", name), ("storage", str(tmp_path / "studies")), ("data", str(data))]))
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    (tmp_path / "faces").mkdir()
    for index, face in enumerate(smooth_faces(3)):
        Image.fromarray(face).save(tmp_path / "faces" / f"{index}.png")
    np.save(tmp_path / "faces.npy", smooth_faces(3))
    for example in readme_examples():
        command = [sys.executable if word == "python" else word for word in shlex.split(example)]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{example}\n{result.stderr[-1500:]}"
