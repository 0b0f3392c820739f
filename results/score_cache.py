"""A small on-disk cache of classical-baseline scores and tuned parameters.

Baselines do not depend on the study: the same filter on the same hold-out bytes gives the same numbers in
every report and every comparison, and BM3D alone costs minutes. Entries are keyed by everything that can
change a number (hold-out checksum, face count, condition, parameter, the source of
``denoise_core/baselines.py``), so a stale entry is never read; a missing directory disables the cache. An entry
that cannot be read (truncated, garbled, not an entry) counts as missing: it is computed and written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import denoise_core.baselines
from denoise_core.files import write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreCache:
    directory: Path | None  # None: compute everything, store nothing

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        if self.directory is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            log.warning("baseline score cache entry %s cannot be read (%s); computing it again", path, error)
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), dict):
            log.warning("baseline score cache entry %s holds no scores; computing it again", path)
            return None
        return entry["value"]

    def put(self, key: dict[str, Any], value: dict[str, Any]) -> None:
        if self.directory is None:
            return
        write_atomic(self._path(key), json.dumps({"key": key, "value": value}, sort_keys=True).encode())

    def _path(self, key: dict[str, Any]) -> Path:
        assert self.directory is not None
        digest = hashlib.sha256(json.dumps({**key, "code": baselines_code_hash()}, sort_keys=True).encode()).hexdigest()[:24]
        return self.directory / f"{digest}.json"


def baselines_code_hash() -> str:
    """Hash of the baselines' source, so editing a filter invalidates its cached scores."""
    return hashlib.sha256(Path(denoise_core.baselines.__file__).read_bytes()).hexdigest()[:16]
