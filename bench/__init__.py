"""Benchmarks, each run as a script (`python bench/NAME.py --help`), and the parts they share."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
