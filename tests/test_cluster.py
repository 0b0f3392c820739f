"""The cluster configs (offline, fast) and a real two-node Ray cluster on this machine (slow, ``-m slow``).

Fast: every YAML in ``cluster/`` passes Ray's own cluster-config validation (``prepare_config`` +
``validate_config``, the checks ``ray up`` makes before it touches a cloud), with the network blocked, and
carries what the study needs on every node: the project installed, FER2013 at one ``FER2013_PATH``, the
environment reaching every Ray process, shared study storage.

Slow: a head (``ray start --head``, its own ports and temp dir) and a second node joined to it, 1 CPU each,
each in its own process group (``bench/ray_nodes.py``, which ``bench/cluster.py`` uses too). The second node advertises 127.0.0.2 (any 127.x address is this machine on
Linux), so Tune's per-trial ``node_ip`` tells the nodes apart as on a real cluster; node ids from Ray's state
API confirm it. The smoke study is run through ``RAY_ADDRESS`` and through ``ray job submit``; both must
finish, with trials on both nodes and every trial's files in the shared storage. Exactly the processes the
test started are stopped at the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from bench.ray_nodes import PYTHON, RAY_CLI, LocalRayNodes, alive, descendants

REPO = Path(__file__).resolve().parents[1]
CLUSTER_DIR = REPO / "cluster"
CLUSTER_YAMLS = sorted(CLUSTER_DIR.glob("*.yaml"))

# Keys Ray passes through unchecked (its schema allows anything under provider / node_config): a typo there
# would only fail at `ray up`, in the cloud. These are the ones these configs may use.
AWS_PROVIDER_KEYS = {"type", "region", "availability_zone", "cache_stopped_nodes", "use_internal_ips", "security_group",
                     "key_pair", "cloudwatch", "vpc_id", "use_external_head_ip"}
EC2_NODE_CONFIG_KEYS = {"InstanceType", "ImageId", "KeyName", "BlockDeviceMappings", "IamInstanceProfile", "InstanceMarketOptions",
                        "SubnetIds", "SecurityGroupIds", "TagSpecifications", "NetworkInterfaces", "Placement", "UserData",
                        "MetadataOptions", "EbsOptimized", "CapacityReservationSpecification", "LaunchTemplate"}
LOCAL_PROVIDER_KEYS = {"type", "head_ip", "worker_ips", "coordinator_address", "external_head_ip"}
TOKEN_MOUNT = "~/.ray/auth_token"  # Ray's token, from the user's machine to every node (Ray's token-auth guide)
PLACEHOLDERS = ("YOUR-BUCKET", "123456789012", "ami-0123456789abcdef0", "10.0.0.", "OWNER", "researcher", "/mnt/lab")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to resolve a name or open a connection (AWS, GitHub, ...) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"cluster config validation tried to use the network: {args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def prepared(path: Path) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(load(path))
    validate_config(config)
    return config


def test_cluster_directory_has_the_aws_and_the_local_config():
    assert {p.name for p in CLUSTER_YAMLS} >= {"cluster.yaml", "local.yaml"}


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_cluster_yaml_passes_rays_own_validation_offline(path, no_network):
    config = prepared(path)
    assert config["head_node_type"] in config["available_node_types"]
    for name, node_type in config["available_node_types"].items():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"], name


def test_rays_validation_would_catch_a_misspelt_field(no_network):
    import jsonschema

    config = load(CLUSTER_DIR / "cluster.yaml")
    config["setup_comands"] = config.pop("setup_commands")
    from ray.autoscaler._private.util import prepare_config, validate_config

    with pytest.raises(jsonschema.ValidationError, match="setup_comands"):
        validate_config(prepare_config(config))


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_provider_and_node_config_keys_are_known(path):
    config = load(path)
    provider = config["provider"]
    if provider["type"] == "aws":
        assert set(provider) <= AWS_PROVIDER_KEYS, set(provider) - AWS_PROVIDER_KEYS
        for name, node_type in config["available_node_types"].items():
            assert set(node_type["node_config"]) <= EC2_NODE_CONFIG_KEYS, (name, set(node_type["node_config"]) - EC2_NODE_CONFIG_KEYS)
    else:
        assert provider["type"] == "local"
        assert set(provider) <= LOCAL_PROVIDER_KEYS, set(provider) - LOCAL_PROVIDER_KEYS


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_every_node_installs_the_project_and_gets_the_data_path(path, no_network):
    config = prepared(path)
    for role in ("head", "worker"):
        setup = "\n".join(config[f"{role}_setup_commands"])
        assert re.search(r"pip install .*torch", setup), role
        assert re.search(r"pip install .*ray\[default,tune,train\]==", setup), role  # the launcher's Ray version, pinned
        assert re.search(r"pip install .*(-e ~/facestudy|git\+https://)", setup), role
        assert "resolve_data_path(None)" in setup, role  # `ray up` fails on a node without the project or the data
        assert "FER2013_PATH" in setup, role
        # `ray start` (and so every trial and driver) runs with the environment that holds FER2013_PATH
        for command in config[f"{role}_start_ray_commands"]:
            assert command.startswith(". ~/.facestudy_env"), command
    exports = re.findall(r"export FER2013_PATH=(\S+?)'", path.read_text())
    assert len(exports) == 1, "the data path must be set in exactly one place"
    assert exports[0].startswith("/")


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_file_mounts_carry_the_whole_package_and_nothing_else(path):
    config = load(path)
    pyproject = load_toml(REPO / "pyproject.toml")
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    mounts = {remote: local for remote, local in config["file_mounts"].items() if remote != TOKEN_MOUNT}
    for remote, local in mounts.items():
        assert (REPO / local).exists(), f"{local} (for {remote}) must exist relative to the repository root, where `ray up` runs"
        assert remote.startswith("~/facestudy/") and Path(remote).name == Path(local).name
    mounted = {Path(local).name for local in mounts.values()}
    assert {"pyproject.toml", pyproject["project"]["readme"]} | {p for p in packages if (REPO / p).is_dir()} <= mounted
    assert not mounted & {".venv", ".git", "studies", "runs"}


def load_toml(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_environment_file_reaches_every_later_shell_and_is_idempotent(path, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("echo existing bashrc\n")
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    first = load(path)["setup_commands"][0]
    for _ in range(2):  # a second `ray up` runs it again
        subprocess.run(["bash", "-c", first], env=env, check=True, timeout=30)
    bashrc = (home / ".bashrc").read_text().splitlines()
    assert bashrc[0] == ". ~/.facestudy_env" and bashrc.count(". ~/.facestudy_env") == 1 and "echo existing bashrc" in bashrc
    shell = subprocess.run(["bash", "-i", "-c", "echo \"$FER2013_PATH|$RAY_AUTH_MODE|$PATH\""], env=env, capture_output=True,
                           text=True, timeout=30)
    data, auth, search_path = shell.stdout.strip().splitlines()[-1].split("|")
    assert data == re.search(r"export FER2013_PATH=(\S+?)'", path.read_text()).group(1)
    assert auth == "token"
    assert search_path.split(":")[0].startswith(str(home))  # the project's virtual environment comes first


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_every_node_gets_the_users_token_and_token_auth(path, no_network):
    config = prepared(path)
    assert config["file_mounts"][TOKEN_MOUNT] == TOKEN_MOUNT  # the user's own file, never one in the repository
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert not [f for f in tracked if Path(f).name == "auth_token"], "a Ray token must never be committed"
    for role in ("head", "worker"):
        setup = config[f"{role}_setup_commands"]
        assert any("test -s ~/.ray/auth_token" in c and "exit 1" in c for c in setup), role  # `ray up` stops without it
        assert "chmod 600 ~/.ray/auth_token" in "\n".join(setup), role
    text = path.read_text()
    assert "export RAY_AUTH_MODE=token'" in text and "RAY_AUTH_MODE=disabled" not in text


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_the_head_alone_gives_the_driver_the_cluster_address(path, tmp_path):
    """`ray submit` runs study/run.py on the head, which joins only a cluster it is given: RAY_ADDRESS in the head's
    environment file names the head's own GCS; a worker's file has none."""
    config = load(path)
    head_command = next(c for c in config["head_setup_commands"] if "RAY_ADDRESS" in c)
    seen = {}
    for role, commands in (("head", [config["setup_commands"][0], head_command]), ("worker", [config["setup_commands"][0]])):
        home = tmp_path / role
        home.mkdir()
        env = {"HOME": str(home), "PATH": os.environ["PATH"]}
        for _ in range(2):  # a second `ray up` runs them again
            for command in commands:
                subprocess.run(["bash", "-c", command], env=env, check=True, timeout=30)
        shell = subprocess.run(["bash", "-i", "-c", "echo \"[$RAY_ADDRESS]\""], env=env, capture_output=True, text=True, timeout=30)
        seen[role] = shell.stdout.strip().splitlines()[-1]
        assert (home / ".facestudy_env").read_text().count("RAY_ADDRESS") == (role == "head")
    assert seen == {"head": "[127.0.0.1:6379]", "worker": "[]"}
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--port=6379" in head_start


def test_local_cluster_fixes_every_ray_port_and_opens_them_to_its_own_machines_only(no_network):
    path = CLUSTER_DIR / "local.yaml"
    raw = load(path)
    firewall = next(c for c in raw["setup_commands"] if "ufw allow" in c)
    ports = re.search(r"port (\S+) ", firewall).group(1)
    assert ports == "6379,8076:8080,10001:10999,52365"
    assert re.search(r"for ip in ([\d. ]+);", firewall).group(1).split() == [raw["provider"]["head_ip"], *raw["provider"]["worker_ips"]]
    head, worker = raw["head_start_ray_commands"][-1], raw["worker_start_ray_commands"][-1]
    fixed = {"--port=6379", "--object-manager-port=8076", "--node-manager-port=8077", "--runtime-env-agent-port=8078",
             "--dashboard-agent-grpc-port=8079", "--metrics-export-port=8080", "--dashboard-agent-listen-port=52365",
             "--min-worker-port=10002", "--max-worker-port=10999"}
    assert fixed <= set(head.split()) and "--ray-client-server-port=10001" in head.split()
    assert fixed - {"--port=6379"} <= set(worker.split())
    assert "--dashboard-host=127.0.0.1" in head.split()  # the dashboard: loopback, reached through `ray dashboard`


def test_aws_cluster_has_a_cpu_head_autoscaling_gpu_workers_and_s3(no_network):
    path = CLUSTER_DIR / "cluster.yaml"
    config = prepared(path)
    assert config["provider"]["type"] == "aws" and config["provider"]["cache_stopped_nodes"] is False
    head = config["available_node_types"][config["head_node_type"]]
    assert not re.match(r"(g|p)\d", head["node_config"]["InstanceType"]), "the head is a CPU node"
    gpu_types = {n: t for n, t in config["available_node_types"].items() if re.match(r"(g|p)\d", t["node_config"]["InstanceType"])}
    assert gpu_types, "an autoscaling GPU worker type"
    for name, node_type in gpu_types.items():
        assert node_type["min_workers"] == 0 and node_type["max_workers"] >= 1, name
        # workers read FER2013 from S3 and write trial files to s3:// storage: they need an instance profile
        assert node_type["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
    setup = "\n".join(config["worker_setup_commands"])
    assert re.search(r'aws s3 cp .*s3://\S+ "\$FER2013_PATH"', setup)
    assert "boto3" in setup  # Ray's and TensorBoard's s3:// access
    text = path.read_text()
    assert "--storage s3://" in text and "pip install \"ray[default]" in text and "boto3" in text.split("\n\n")[0]


def test_local_cluster_has_fixed_nodes_ssh_and_shared_nfs_storage(no_network):
    path = CLUSTER_DIR / "local.yaml"
    raw = load(path)
    assert raw["provider"]["head_ip"] and raw["provider"]["worker_ips"]
    assert raw["auth"]["ssh_user"] and raw["auth"]["ssh_private_key"]
    config = prepared(path)
    assert config["available_node_types"]["local.cluster.node"]["min_workers"] == len(raw["provider"]["worker_ips"])
    storage = re.search(r"--storage (\S+)", path.read_text()).group(1)
    assert storage.startswith("/") and "://" not in storage
    setup = "\n".join(config["worker_setup_commands"])
    assert f"test -w {storage}" in setup, "every node checks that it can write the shared study storage"
    data = re.search(r"export FER2013_PATH=(\S+?)'", path.read_text()).group(1)
    assert data.startswith(str(Path(storage).parents[1])), "data on the same NFS share as the studies"


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_every_placeholder_is_marked_change_me(path):
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if any(p in line for p in PLACEHOLDERS) and not line.lstrip().startswith("#"):
            nearby = lines[max(0, number - 10): number + 1]
            assert any("CHANGE ME" in n for n in nearby), f"{path.name}:{number + 1} needs a '# CHANGE ME': {line.strip()}"


def test_descendants_finds_a_process_tree_and_its_group_and_nothing_else(tmp_path):
    """What LocalRayNodes stops: the leader, its children, a grandchild left behind in the leader's process group."""
    script = "sleep 60 & (sleep 61 &) ; echo ready; wait"
    leader = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    other = subprocess.Popen(["sleep", "62"], start_new_session=True)
    try:
        assert leader.stdout.readline().strip() == "ready"
        found = descendants({leader.pid})
        commands = sorted(" ".join(psutil.Process(pid).cmdline()) for pid in found - {leader.pid})
        assert leader.pid in found and other.pid not in found
        assert commands == ["sleep 60", "sleep 61"]
    finally:
        for pid in descendants({leader.pid}):
            os.kill(pid, signal.SIGKILL)
        other.kill()
        leader.wait(timeout=10)
        other.wait(timeout=10)
    assert not alive(found)


# ---------------------------------------------------------------------------------------------------------
# The slow test: a real two-node cluster on this machine.


def trial_nodes_from_state_api(cluster: LocalRayNodes, pids: set[int]) -> dict[int, str]:
    """Trial process id -> node id, from Ray's state API (dead actors included)."""
    from ray.util.state import list_actors

    actors = list_actors(address=cluster.dashboard_url, detail=True, limit=10000, raise_on_missing_output=False)
    return {a.pid: a.node_id for a in actors if a.pid in pids}


def check_two_node_study(study_dir: Path, cluster: LocalRayNodes, nodes: list[dict], trials_expected: int) -> pd.DataFrame:
    trials = pd.read_csv(study_dir / "trials.csv")
    assert len(trials) == trials_expected
    assert set(trials["status"]) <= {"completed", "stopped by ASHA"}, trials["status"].tolist()
    # The trial table itself shows both nodes: each node has its own IP.
    assert set(trials["node_ip"]) == {n["ip"] for n in nodes}, (trials["node_ip"].tolist(), nodes)
    # And Ray's state API agrees: the trial processes ran on both node ids.
    pids = {}
    for trial_id in trials["trial_id"]:
        lines = (study_dir / f"trial_{trial_id}" / "result.json").read_text().splitlines()
        last = json.loads(lines[-1])
        pids[int(last["pid"])] = last["node_ip"]
        trial_dir = study_dir / f"trial_{trial_id}"
        # checkpoints and TensorBoard files reach the shared storage from whichever node ran the trial
        assert list(trial_dir.glob("events.out.tfevents*")), trial_id
        assert list(trial_dir.glob("checkpoint_*/checkpoint.pt")), trial_id
    on_node = trial_nodes_from_state_api(cluster, set(pids))
    assert set(on_node) == set(pids)
    assert set(on_node.values()) == {n["id"] for n in nodes}
    assert (study_dir / "best" / "model.pt").is_file() and (study_dir / "best" / "holdout.csv").is_file()
    return trials


@pytest.mark.slow
def test_smoke_study_spreads_over_a_real_two_node_cluster(tmp_path, fer2013_path):
    from denoise_core.data import read_csv_head

    data = tmp_path / "fer2013-slice.csv"
    data.write_bytes(read_csv_head(fer2013_path, 300))
    storage = tmp_path / "studies"
    study_args = ["--preset", "smoke", "--data", str(data), "--storage", str(storage), "--set", "max_concurrent=2",
                  "--set", "holdout_faces=32"]
    # Every node, trial and job driver gets the same environment, as cluster.yaml's ~/.facestudy_env gives them.
    cluster = LocalRayNodes(nodes=2, cpus=1, env={"FACESTUDY_CACHE": str(tmp_path / "cache")}, dashboard=True)
    started = time.monotonic()
    with cluster:
        nodes = cluster.alive_nodes()
        assert len(nodes) == 2 and len({n["ip"] for n in nodes}) == 2 and all(n["cpu"] == 1 for n in nodes)
        env = cluster.env
        print(f"\ncluster up in {time.monotonic() - started:.0f} s: {nodes}")

        # (a) the study as a driver on this machine, joined through RAY_ADDRESS
        begin = time.monotonic()
        run = subprocess.run([PYTHON, str(REPO / "study" / "run.py"), *study_args, "--name", "twonode"], cwd=tmp_path,
                             env=env | {"RAY_ADDRESS": cluster.address}, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        trials = check_two_node_study(storage / "twonode", cluster, nodes, trials_expected=3)
        print(f"RAY_ADDRESS study: {time.monotonic() - begin:.0f} s, trials per node IP {trials['node_ip'].value_counts().to_dict()}")

        # (b) the same study submitted as a Ray job: the driver runs on the head, the code travels as working_dir
        begin = time.monotonic()
        job = subprocess.run([RAY_CLI, "job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(REPO), "--",
                              PYTHON, "study/run.py", *study_args, "--name", "twonode-job"],
                             env=env, capture_output=True, text=True, timeout=600)
        assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
        trials = check_two_node_study(storage / "twonode-job", cluster, nodes, trials_expected=3)
        print(f"ray job submit study: {time.monotonic() - begin:.0f} s, trials per node IP {trials['node_ip'].value_counts().to_dict()}")
        started_processes = cluster.processes()
        assert started_processes
    # stopped: nothing this test started is left, and the head's port is closed
    assert not alive(started_processes)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", cluster.port)) != 0
    assert not cluster.temp_dir.exists()
