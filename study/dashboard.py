"""optuna-dashboard on a study, by its directory: the database and the grids' artifact store come from its study.yaml.

    python -m study.dashboard studies/local                        # http://127.0.0.1:8080
    python -m study.dashboard s3://BUCKET/studies/full-1 --port 8081   # on a cluster's head, where its database is

The plain ``optuna-dashboard sqlite:///studies/NAME/optuna.db --artifact-dir studies/NAME/optuna-artifacts`` shows
the same for a local study; this one also reads the grids of a study in object storage, which optuna-dashboard's
own ``--artifact-dir`` cannot.
"""

from __future__ import annotations

import argparse

from denoise_core.cli import ArgumentParser, run_cli
from denoise_core.errors import InputError, MissingFile
from denoise_core.settings import load_yaml
from denoise_core.study_files import OPTUNA_ARTIFACTS, OPTUNA_DB, STUDY_CONFIG
from study import storage
from study.config import storage_root
from study.optuna_db import StudyArtifactStore, has_study, open_storage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m study.dashboard", description="Open optuna-dashboard on a study, while it runs or after.")
    parser.add_argument("study", help="the study directory (STORAGE/NAME), local or s3://")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="the port to serve on (default: 8080)")
    return parser.parse_args(argv)


def study_database(study_uri: str) -> str:
    """The Optuna database URL the study was started with, once it holds the study."""
    config_uri = f"{study_uri}/{STUDY_CONFIG}"
    if not storage.exists(config_uri):
        raise MissingFile(f"{study_uri} is not a study directory: no {STUDY_CONFIG} (start one with python study/run.py)")
    saved = load_yaml(storage.read_bytes(config_uri).decode(), config_uri) or {}
    if not isinstance(saved, dict):
        raise InputError(f"{config_uri} must hold a mapping of settings, not a {type(saved).__name__}: the study directory is damaged")
    url = saved.get("optuna_storage") or f"sqlite:///{study_uri}/{OPTUNA_DB}"
    if not has_study(url, str(saved.get("name"))):
        raise MissingFile(f"{url} holds no Optuna study '{saved.get('name')}': the study was started before studies kept one")
    return url


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def run() -> None:
        try:
            import optuna_dashboard
        except ImportError:
            raise MissingFile("optuna-dashboard is not installed: pip install -e '.[dashboard]'") from None
        study_uri = storage_root(args.study)
        url = study_database(study_uri)
        print(f"optuna-dashboard on {url}: http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
        optuna_dashboard.run_server(open_storage(url), host=args.host, port=args.port,
                                    artifact_store=StudyArtifactStore(f"{study_uri}/{OPTUNA_ARTIFACTS}"))

    run_cli(run, "python -m study.dashboard")


if __name__ == "__main__":
    main()
