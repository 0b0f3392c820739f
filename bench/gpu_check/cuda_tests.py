"""Section a: the project's ``cuda`` tests, run on the GPU machine and counted."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from bench import REPO_ROOT
from bench.gpu_check.report import Section, progress


PYTEST_COMMAND = ("-m", "pytest", "-m", "cuda", "-q", "tests/test_cuda.py", "tests/test_ddp.py", "-p", "no:cacheprovider")


def run_cuda_tests(timeout: float, log_path: Path) -> Section:
    section = Section("a", "cuda tests: " + " ".join(("python",) + PYTEST_COMMAND))
    if timeout < 20:
        section.rows.append({"status": "skipped: budget"})
        return section
    progress(f"a: pytest -m cuda (at most {timeout:.0f} s)")
    started = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, *PYTEST_COMMAND], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
        output, code = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as expired:
        output, code = text_of(expired.stdout) + text_of(expired.stderr), None
        section.notes.append(f"stopped after {timeout:.0f} s (budget); counts are from what had finished")
    log_path.write_text(output)
    counts = pytest_counts(output)
    section.rows.append({**counts, "seconds": round(time.perf_counter() - started, 1), "exit code": code})
    failures = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    section.notes += failures or ["no failures"]
    section.notes.append(f"full output: {log_path.name}")
    return section


def text_of(stream: str | bytes | None) -> str:
    """A timed-out subprocess's captured output: bytes on some Pythons even with text=True."""
    return stream.decode(errors="replace") if isinstance(stream, bytes) else (stream or "")


def pytest_counts(output: str) -> dict[str, int]:
    """``3 passed, 1 skipped, 5 deselected in 9.1s`` as counts; an outcome absent from the summary is 0."""
    found = {word: int(number) for number, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", output)}
    found["error"] = found.pop("errors", 0) + found.get("error", 0)
    return {name: found.get(name, 0) for name in ("passed", "failed", "error", "skipped", "deselected")}

