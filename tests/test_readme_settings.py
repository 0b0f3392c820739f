"""The README's settings tables are generated from the schema: every setting with its flag and default, nothing stale.

After adding or changing a setting, regenerate them with ``python tests/test_readme_settings.py``.
"""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from denoise_core.fit import TrainConfig  # noqa: E402
from denoise_core.settings import field_paths, settings_table  # noqa: E402
from denoise_core.train import parse_args as train_args  # noqa: E402
from results.compare import COMPARED  # noqa: E402
from results.options import ReportOptions  # noqa: E402
from results.report import parse_args as report_args  # noqa: E402
from study.config import StudyConfig  # noqa: E402
from study.run import parse_args as study_args  # noqa: E402

README = REPO / "README.md"
BLOCK = re.compile(r"(<!-- settings: (\w+) -->\n)(.*?)(<!-- /settings -->)", re.S)


def tables() -> dict[str, str]:
    """Each generated table by its name in the README's ``<!-- settings: NAME -->`` markers."""
    study_flags, train_flags, report_flags = study_args([])[1], train_args(["--out", "x"])[1], report_args(["x"])[1]
    assert {flag.name for flag in study_flags if flag.path.startswith("train.")} - {"--train-seed"} == {f.name for f in train_flags} - {"--seed"}
    return {
        "StudyConfig": settings_table(StudyConfig, study_flags, skip=("train",)),
        "TrainConfig": settings_table(TrainConfig, study_flags, prefix="train."),
        "ReportOptions": settings_table(ReportOptions, report_flags),
    }


def rewritten(text: str) -> str:
    generated = tables()
    return BLOCK.sub(lambda match: match.group(1) + generated[match.group(2)] + "\n" + match.group(4), text)


def test_every_settings_table_in_the_readme_is_the_generated_one():
    text = README.read_text()
    assert {match.group(2) for match in BLOCK.finditer(text)} == set(tables())
    assert rewritten(text) == text, "a README settings table is stale: run python tests/test_readme_settings.py"


def test_the_tables_name_every_setting_and_its_default():
    generated = tables()
    for name, cls, prefix in (("StudyConfig", StudyConfig, ""), ("TrainConfig", TrainConfig, "train.")):
        for path, _ in field_paths(cls).items():
            if not path.startswith("train."):
                assert f"| `{prefix}{path}` |" in generated[name]
    assert "| `train.model.dropout` | `--model-dropout` | `0.15` |" in generated["TrainConfig"]
    assert "| `train.seed` | `--train-seed` | `0` |" in generated["TrainConfig"]
    assert "| `top` | `--top` | `2` |" in generated["ReportOptions"] and COMPARED.top == 1


if __name__ == "__main__":
    README.write_text(rewritten(README.read_text()))
    print(f"rewrote the settings tables in {README}")
