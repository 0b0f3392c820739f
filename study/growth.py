"""Trials that take the CPUs ended trials free, in the process they run in (``grow_trials``).

When no trial waits for the CPUs a finished trial leaves, which is how every study ends, the running trials on that
node split them. The driver works out the torch threads of a trial on each node whenever a trial starts, reports or
ends (``thread_shares``) and publishes them in Ray's key-value store, where Tune keeps its trainables; a trial reads its
node's share after each epoch's report and trains its next epoch with that many threads. Tune's
``ResourceChangingScheduler`` grows a trial by restarting it from its checkpoint in a new process (3 to 4 s between an
epoch and the next in the first command's study, and the imports and setup again), and Ray refuses it beside reused
trial processes (``reuse_actors``). Switching threads at an epoch's end gives the weights that such a restart from that
epoch's checkpoint gives (tests/test_train.py).

A grown trial still holds in Ray the CPUs it asked for, and uses some Ray counts as free. That happens only once every
trial of the study has started and none waits, so nothing the study starts competes for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray import tune

KEY_PREFIX = "facestudy-threads"


@dataclass(frozen=True)
class TrialPlace:
    trial_id: str
    status: str  # Tune's: PENDING, RUNNING, PAUSED, TERMINATED, ERROR
    node: str | None  # the node's address from the trial's last result; None before its first


def thread_shares(trials: list[TrialPlace], node_cpus: dict[str, float], base: int, all_started: bool) -> dict[str, int]:
    """The torch threads of each running trial on each node: ``base`` while a trial is still to start or waits, else
    the node's CPUs split evenly among the trials running there (a trial whose node is not known yet counts on every
    node)."""
    if not all_started or any(trial.status in ("PENDING", "PAUSED") for trial in trials):
        return {node: base for node in node_cpus}
    running = [trial.node for trial in trials if trial.status == "RUNNING"]
    shares = {}
    for node, cpus in node_cpus.items():
        here = sum(1 for place in running if place in (node, None))
        shares[node] = max(base, int(cpus // max(1, here)))
    return shares


def share_key(study_uri: str, node: str) -> bytes:
    return f"{KEY_PREFIX}/{study_uri}/{node}".encode()


def threads_now(study_uri: str, base: int) -> int:
    """What the driver last gave the trials on this process's node (``ThreadShares``), read in a trial's process;
    ``base`` before it said, or outside Ray."""
    import ray
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_initialized

    if not ray.is_initialized() or not _internal_kv_initialized():
        return base
    value = _internal_kv_get(share_key(study_uri, ray.util.get_node_ip_address()))
    return int(value) if value else base


class ThreadShares(tune.Callback):
    """The driver's side: the shares worked out again whenever a trial starts, reports or ends."""

    def __init__(self, study_uri: str, base: int, num_samples: int):
        self.study_uri, self.base, self.num_samples = study_uri, base, num_samples
        self.given: dict[str, int] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._publish(trials, trial.trial_id, "RUNNING")  # Tune marks it running right after this call

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        self._publish(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._publish(trials, trial.trial_id, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._publish(trials, trial.trial_id, "ERROR")

    def _publish(self, trials: list, trial_id: str | None = None, status: str | None = None) -> None:
        import ray
        from ray.experimental.internal_kv import _internal_kv_put

        places = [TrialPlace(trial.trial_id, status if trial.trial_id == trial_id else str(trial.status),
                             (trial.last_result or {}).get("node_ip")) for trial in trials]
        nodes = {node["NodeManagerAddress"]: node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")}
        for node, threads in thread_shares(places, nodes, self.base, all_started=len(trials) >= self.num_samples).items():
            if self.given.get(node) != threads:
                _internal_kv_put(share_key(self.study_uri, node), str(threads).encode(), overwrite=True)
                self.given[node] = threads
