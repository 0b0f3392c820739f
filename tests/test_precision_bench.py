"""bench/precision_quality.py end to end at its smoke size: fp32 and auto side by side, with their differences."""

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_quick_precision_comparison_prints_both_formats_and_their_difference(fer2013_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "precision_quality.py"), "--quick", "--seeds", "0", "--data", str(fer2013_path)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout.split("auto - fp32")[1]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ") and "score" not in line}
    assert set(rows) >= {"val_psnr", "test_sp:0.1", "test_sp:0.7", "test_mean", "seconds"}
    difference = float(rows["val_psnr"].split("|")[4])
    assert abs(difference) < 0.5  # one epoch on 256 faces in both formats lands within half a dB
