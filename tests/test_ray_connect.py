"""How the study reaches Ray (``study.study.connect``): it joins a cluster only when asked, and its own instance
listens on loopback only, with token auth and an owner-only token file.

A token-auth cluster is started with ``ray start --head`` (``bench/ray_nodes.py``: its own port, temp dir and
process group, 1 CPU) and marked as the machine's latest cluster the way ``ray start`` marks it
(``ray_current_cluster`` in the default Ray temp dir, here ``$RAY_TMPDIR/ray``), so a plain ``ray.init()`` would
join it. Each study driver is a fresh process with its own ``HOME`` (so its token file is its own, never the
user's) and the environment each case sets; it reports what it joined and the listening sockets of its processes.
"""

from __future__ import annotations

import json
import os
import stat
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bench.ray_nodes import PYTHON, RAY_CLI, LocalRayNodes

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}

DRIVER = """
import json, os, psutil, ray
from study.study import connect
connect(None, None, verbose=1)  # as study/run.py without --address or --num-cpus

@ray.remote(num_cpus=0)
def worker_pid():
    return os.getpid()

ray.get(worker_pid.remote())  # a worker process, so its sockets count too
processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
listening = set()
for process in processes:
    try:
        listening |= {(process.name(), c.laddr.ip) for c in process.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    except psutil.Error:
        pass
token = os.path.expanduser("~/.ray/auth_token")
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "node_ip": ray.util.get_node_ip_address(),
                  "auth": os.environ.get("RAY_AUTH_MODE"), "listening": sorted(listening),
                  "token_mode": os.stat(token).st_mode & 0o777 if os.path.exists(token) else None}))
ray.shutdown()
"""


def run_driver(home: Path, ray_tmpdir: Path, env: dict[str, str]) -> tuple[dict, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base |= {"HOME": str(home), "RAY_TMPDIR": str(ray_tmpdir), "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    result = subprocess.run([PYTHON, "-c", DRIVER], env=base | env, capture_output=True, text=True, timeout=300, cwd=home)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout, result.stderr


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory):
    """A `ray start` head with token auth, whose token ``ray get-auth-token --generate`` wrote (mode 0644 under the
    usual umask), marked as the latest cluster in ``RAY_TMPDIR``."""
    home = tmp_path_factory.mktemp("cluster-home")
    auth = {"HOME": str(home), "RAY_AUTH_MODE": "token"}
    subprocess.run([RAY_CLI, "get-auth-token", "--generate"], env=os.environ | auth, capture_output=True, check=True, timeout=120)
    ray_tmpdir = Path(tempfile.mkdtemp(prefix="fsconn-", dir="/tmp"))  # Ray's socket paths must stay under 107 characters
    try:
        with LocalRayNodes(nodes=1, cpus=1, env=auth) as cluster:
            (ray_tmpdir / "ray").mkdir()
            (ray_tmpdir / "ray" / "ray_current_cluster").write_text(cluster.address)  # what `ray start` writes there
            yield {"cluster": cluster, "home": home, "ray_tmpdir": ray_tmpdir}
    finally:
        shutil.rmtree(ray_tmpdir, ignore_errors=True)


@pytest.fixture(scope="module")
def own_instance(token_cluster, tmp_path_factory):
    """The study with no address and no RAY_AUTH_MODE (Ray's default), for a user with no token yet."""
    home = tmp_path_factory.mktemp("study-home")
    report, stdout, stderr = run_driver(home, token_cluster["ray_tmpdir"], {})
    return {"report": report, "stdout": stdout, "stderr": stderr, "home": home}


def test_without_an_address_the_study_starts_its_own_ray_beside_a_ray_start_cluster(own_instance, token_cluster):
    gcs_port = int(own_instance["report"]["gcs"].rsplit(":", 1)[1])
    assert gcs_port != token_cluster["cluster"].port
    assert "joined" not in own_instance["stdout"]


def test_its_own_ray_listens_on_loopback_only(own_instance):
    report = own_instance["report"]
    names = {name for name, _ in report["listening"]}
    assert {"gcs_server", "raylet"} <= names and len(names) >= 4, names  # GCS, raylet, the driver, workers, agents
    assert {ip for _, ip in report["listening"]} <= LOOPBACK, report["listening"]
    assert report["node_ip"] == "127.0.0.1"


def test_its_own_ray_uses_token_auth_with_a_new_owner_only_token(own_instance):
    report = own_instance["report"]
    assert report["auth"] == "token"
    token = own_instance["home"] / ".ray" / "auth_token"
    assert report["token_mode"] == 0o600 and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text().strip()) == 64  # 256 random bits in hex, as `ray get-auth-token --generate` writes
    assert "readable by other users" not in own_instance["stderr"]


def test_with_ray_address_the_study_joins_that_cluster_says_so_and_makes_the_token_private(token_cluster):
    cluster, home = token_cluster["cluster"], token_cluster["home"]
    token = home / ".ray" / "auth_token"
    token.chmod(0o644)
    report, stdout, stderr = run_driver(home, token_cluster["ray_tmpdir"], {"RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "token"})
    assert int(report["gcs"].rsplit(":", 1)[1]) == cluster.port
    assert f"joined the Ray cluster at {cluster.address} (RAY_ADDRESS)" in stdout
    assert f"{token} was readable by other users (mode 0644); made it 0600" in stderr
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and report["token_mode"] == 0o600


def test_with_auth_disabled_the_study_says_so_in_one_line(token_cluster, tmp_path):
    report, _, stderr = run_driver(tmp_path, token_cluster["ray_tmpdir"], {"RAY_AUTH_MODE": "disabled"})
    assert report["auth"] == "disabled" and report["token_mode"] is None  # no token written
    lines = [line for line in stderr.splitlines() if "token authentication is off" in line]
    assert len(lines) == 1 and "RAY_AUTH_MODE=disabled" in lines[0]
    assert {ip for _, ip in report["listening"]} <= LOOPBACK
