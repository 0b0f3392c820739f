"""A study folder is data: ``--resume`` unpickles only files that this user's own driver wrote.

Ray Tune's restore unpickles ``tuner.pkl``, its search-generator and callback states and the cloudpickled fields in
``experiment_state-*.json``, and its results unpickle a trial's ``error.pkl``. When a driver hands control back
(finished, interrupted or failed), ``sign`` writes the SHA-256 of each such file to ``STUDY/resume-manifest.json``
with an HMAC under a per-user key kept outside the study (``~/.config/facestudy/study-key``, or the file named by
``FACESTUDY_STUDY_KEY``). Before a restore, ``verify`` refuses in one line a missing or foreign signature, a changed
or missing file, or a pickle the manifest does not list. A driver killed outright (SIGKILL) signs nothing; a user who
trusts such a folder signs it with ``python -m study.signing STUDY``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import stat
import sys
from pathlib import Path

import pyarrow.fs as pafs

from study import storage
from study.config import StudyConfigError

MANIFEST = "resume-manifest.json"
TOP_LEVEL = ("tuner.pkl", "experiment_state-*.json", "search_gen_state-*.json", "basic-variant-state-*.json", "searcher-state-*",
             "callback-states-*")  # what Tune's restore loads from the experiment directory
KEY_ENV = "FACESTUDY_STUDY_KEY"


def key_path() -> Path:
    return Path(os.environ.get(KEY_ENV) or Path.home() / ".config" / "facestudy" / "study-key").expanduser()


def study_key(create: bool = True) -> bytes | None:
    """The user's signing key (created owner-only on first use), None when absent and not created; a key that another
    user could read or write is refused, since whoever reads it can sign a folder that ``--resume`` would run."""
    path = key_path()
    if create and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as key:
                key.write(secrets.token_hex(32))
        except FileExistsError:
            pass
    if not path.exists():
        return None
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077 or info.st_uid != os.getuid():
        raise StudyConfigError(f"the study key {path} is not private to you (mode {stat.S_IMODE(info.st_mode):04o}): whoever reads it can "
                               f"sign a study folder that --resume would run; chmod 600 {path}, or delete it if others may have read it")
    return path.read_bytes().strip()


def restored_files(study_uri: str) -> list[str]:
    """The files under the study that Tune's restore or results unpickle, relative to it, sorted."""
    filesystem, root = storage.filesystem(study_uri)
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    names = [info.path[len(root.rstrip("/")) + 1:] for info in infos if info.type == pafs.FileType.File]
    return sorted(name for name in names if name.endswith(".pkl") or ("/" not in name and any(fnmatch.fnmatch(name, p) for p in TOP_LEVEL)))


def digests(study_uri: str, names: list[str]) -> dict[str, str]:
    return {name: hashlib.sha256(storage.read_bytes(f"{study_uri}/{name}")).hexdigest() for name in names}


def signature(key: bytes, files: dict[str, str]) -> str:
    return hmac.new(key, json.dumps(files, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def sign(study_uri: str) -> None:
    """Vouch for the study's restorable files as they are now (this driver wrote them, or verified them before it began)."""
    key = study_key(create=True)
    files = digests(study_uri, restored_files(study_uri))
    manifest = {"files": files, "hmac": signature(key, files)}
    storage.write_bytes(f"{study_uri}/{MANIFEST}", json.dumps(manifest, indent=1).encode())


def verify(study_uri: str, name: str) -> None:
    """Refuse, before anything in it is unpickled, a study whose restorable files this user's driver did not leave as they are."""
    where, found = f"{study_uri}/{MANIFEST}", restored_files(study_uri)
    untrusted = "resuming would run the pickles in it as code"
    trust = f"if you trust every file in it, sign it with: python -m study.signing {study_uri}"
    if not storage.exists(where):
        raise StudyConfigError(f"{where} is missing: no driver of yours closed study '{name}' (it was killed, copied from someone else or "
                               f"begun by an older facestudy), and {untrusted}; {trust}")
    try:
        manifest = json.loads(storage.read_bytes(where))
        files, mac = manifest["files"], manifest["hmac"]
        valid = isinstance(files, dict) and all(isinstance(v, str) for v in files.values()) and isinstance(mac, str)
    except (ValueError, TypeError, KeyError):
        valid = False
    key = study_key(create=False)
    if not valid or key is None or not hmac.compare_digest(signature(key, files), mac):
        raise StudyConfigError(f"{where} is not signed with your study key ({key_path()}): study '{name}' was not closed by a driver of "
                               f"yours, and {untrusted}; {trust}")
    for file in found:
        if file not in files:
            raise StudyConfigError(f"{study_uri}/{file} is a pickle that {MANIFEST} does not list, and {untrusted}; delete it if you did not put it there")
    actual = digests(study_uri, found)
    for file, digest in files.items():
        if file not in actual:
            raise StudyConfigError(f"{study_uri}/{file}, listed in {MANIFEST}, is missing; put it back from a copy of the study")
        if not hmac.compare_digest(actual[file], digest):
            raise StudyConfigError(f"{study_uri}/{file} changed after your driver closed study '{name}', and {untrusted}; put the original "
                                   "back from a copy of the study")


def main(argv: list[str] | None = None) -> None:
    """``python -m study.signing STUDY``: vouch for a study folder whose driver could not sign it (it was killed)."""
    from denoise_core.cli import ArgumentParser, run_cli

    parser = ArgumentParser(prog="python -m study.signing", description="Sign a study folder's restorable files with your study key, "
                            "so that --resume accepts them. Only for folders you trust: a resume runs them as code.")
    parser.add_argument("study", help="the study directory, STORAGE/NAME")
    args = parser.parse_args(argv)

    def run() -> None:
        if not storage.exists(f"{args.study}/study.yaml"):
            raise StudyConfigError(f"{args.study} is not a study directory (no study.yaml)")
        sign(args.study)
        print(f"signed {len(restored_files(args.study))} restorable file(s) of {args.study} with {key_path()}", file=sys.stderr)

    run_cli(run, "python -m study.signing")


if __name__ == "__main__":
    main()
