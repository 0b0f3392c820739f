"""A bench script loaded as a module, so that its tests call the functions the command itself runs."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_bench(script: str) -> ModuleType:
    """``bench/SCRIPT`` as a module; the path entries it adds for its own imports are taken back."""
    name = f"bench_{Path(script).stem}"
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module
