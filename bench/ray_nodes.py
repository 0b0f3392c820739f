"""Ray nodes on this machine, started with `ray start --block`, and stopping exactly the processes they started.

Each node runs in its own process group and its own temp dir (as a real node has its own disk: with one shared
dir, both nodes' runtime-env agents would manage one working_dir copy, and a job driver's working directory
vanished under it). Nodes after the head advertise 127.0.0.2, 127.0.0.3, ... (any 127.x address is this machine
on Linux), so Tune's per-trial ``node_ip`` tells them apart as on a real cluster. Stopping never uses
`ray stop`, which would stop every Ray on the machine, others' included.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PYTHON = str(Path(sys.executable).absolute())  # `ray job submit` needs the environment's python by absolute path
RAY_CLI = str(Path(sys.executable).absolute().with_name("ray"))
QUIET_RAY = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
             "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live process; zombies are left out, being already gone."""
    table = {}
    for process in psutil.process_iter(["ppid", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE:
                table[process.pid] = (process.info["ppid"], os.getpgid(process.pid))
        except (ProcessLookupError, psutil.Error):
            continue
    return table


def descendants(leaders: set[int]) -> set[int]:
    """The live processes among ``leaders``, in their process groups, and every descendant of those."""
    table = process_table()
    found = {pid for pid, (_, group) in table.items() if pid in leaders or group in leaders}
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie is not)."""
    return pids & set(process_table())


class LocalRayNodes:
    """A head and ``nodes - 1`` nodes joined to it, ``cpus`` CPUs and no GPU each; a context manager that
    starts them and, on leaving, stops everything they started and removes their temp dir."""

    def __init__(self, nodes: int, cpus: int, env: dict[str, str] | None = None, dashboard: bool = False):
        self.count, self.cpus, self.dashboard = nodes, cpus, dashboard
        self.temp_dir = Path(tempfile.mkdtemp(prefix="fsray-", dir="/tmp"))  # Ray's socket paths must stay under 107 characters
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | QUIET_RAY | (env or {})
        self.popens: list[subprocess.Popen] = []

    def start(self, timeout: float = 180) -> "LocalRayNodes":
        dashboard = ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port)] if self.dashboard else []
        self._launch([RAY_CLI, "start", "--head", "--port", str(self.port), "--num-cpus", str(self.cpus), "--num-gpus", "0",
                      "--temp-dir", str(self.temp_dir / "head"), "--include-dashboard", str(self.dashboard).lower(), *dashboard,
                      "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                      "--disable-usage-stats", "--block"], "head")
        self._wait(1, timeout)
        for index in range(1, self.count):
            self._launch([RAY_CLI, "start", "--address", self.address, "--num-cpus", str(self.cpus), "--num-gpus", "0",
                          "--node-ip-address", f"127.0.0.{index + 1}", "--temp-dir", str(self.temp_dir / f"node{index}"),
                          "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats", "--block"], f"node{index}")
        self._wait(self.count, timeout)
        return self

    def _launch(self, command: list[str], name: str) -> None:
        with open(self.temp_dir / f"{name}.log", "wb") as log:
            self.popens.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True))

    def alive_nodes(self) -> list[dict]:
        """``{"id", "ip", "cpu"}`` of every live node, as Ray sees them; empty while the head does not answer."""
        script = ("import json, ray; ray.init(address=%r, log_to_driver=False, logging_level='ERROR');"
                  "print(json.dumps([{'id': n['NodeID'], 'ip': n['NodeManagerAddress'], 'cpu': n['Resources'].get('CPU', 0)}"
                  " for n in ray.nodes() if n['Alive']]))") % self.address
        result = subprocess.run([PYTHON, "-c", script], env=self.env, capture_output=True, text=True, timeout=60)
        if result.returncode:
            return []
        return json.loads(result.stdout.strip().splitlines()[-1])

    def _wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for popen in self.popens:
                if popen.poll() is not None:
                    raise RuntimeError(f"a Ray node exited with {popen.returncode}: {self.logs()}")
            if len(self.alive_nodes()) >= count:
                return
            time.sleep(1)
        raise TimeoutError(f"{count} Ray node(s) not alive after {timeout:.0f} s: {self.logs()}")

    def logs(self) -> str:
        return " | ".join(p.read_text(errors="replace")[-1500:] for p in sorted(self.temp_dir.glob("*.log")))

    def processes(self) -> set[int]:
        """Every live process these nodes started: Ray workers and `ray job` drivers run in process groups of their own."""
        return descendants({popen.pid for popen in self.popens})

    def stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            targets = self.processes()
            for pid in targets:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and alive(targets):
                time.sleep(0.3)
        for popen in self.popens:
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> "LocalRayNodes":
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
