"""Trials that take the CPUs ended trials free in their own process (study.growth): the shares the driver gives, and
the tuner that runs them."""

import pytest

from study.config import build_config
from study.growth import ThreadShares, TrialPlace, thread_shares, threads_now
from study.study import Resources, new_tuner

TWO_CORES = {"10.0.0.1": 2.0}


def place(trial_id: str, status: str = "RUNNING", node: str | None = "10.0.0.1") -> TrialPlace:
    return TrialPlace(trial_id, status, node)


def test_a_lone_trial_takes_its_nodes_cpus_once_every_trial_has_started():
    trials = [place("a"), place("b", "TERMINATED"), place("c", "ERROR")]
    assert thread_shares(trials, TWO_CORES, base=1, all_started=True) == {"10.0.0.1": 2}
    assert thread_shares(trials[:1], {"10.0.0.1": 7.0}, base=2, all_started=True) == {"10.0.0.1": 7}
    assert thread_shares([place("a", node=None)], TWO_CORES, base=1, all_started=True) == {"10.0.0.1": 2}  # before its first result


def test_no_trial_grows_while_the_search_still_has_trials_to_start_or_one_waits():
    assert thread_shares([place("a"), place("b", "TERMINATED")], TWO_CORES, base=1, all_started=False) == {"10.0.0.1": 1}
    assert thread_shares([place("a"), place("b", "PENDING", None)], TWO_CORES, base=1, all_started=True) == {"10.0.0.1": 1}
    assert thread_shares([place("a"), place("b", "PAUSED")], TWO_CORES, base=1, all_started=True) == {"10.0.0.1": 1}


def test_running_trials_split_their_own_nodes_cpus():
    nodes = {"10.0.0.1": 8.0, "10.0.0.2": 2.0}
    trials = [place("a"), place("b"), place("c"), place("d", node="10.0.0.2")]
    assert thread_shares(trials, nodes, base=1, all_started=True) == {"10.0.0.1": 2, "10.0.0.2": 2}
    assert thread_shares(trials[:2] + trials[3:], nodes, base=1, all_started=True) == {"10.0.0.1": 4, "10.0.0.2": 2}
    assert thread_shares([place("a"), place("b")], TWO_CORES, base=1, all_started=True) == {"10.0.0.1": 1}
    assert thread_shares([place("a"), place("b")], {"10.0.0.1": 3.0}, base=1, all_started=True) == {"10.0.0.1": 1}  # never more threads than cores


def test_a_trial_whose_node_is_not_known_yet_counts_on_every_node():
    nodes = {"10.0.0.1": 4.0, "10.0.0.2": 4.0}
    assert thread_shares([place("a"), place("b", node=None)], nodes, base=1, all_started=True) == {"10.0.0.1": 2, "10.0.0.2": 4}


def test_outside_ray_a_trial_keeps_its_threads():
    assert threads_now("studies/x", base=3) == 3


@pytest.mark.parametrize("preset, resources, grows", [
    ("local", Resources(workers=0, cpu=1.0, gpu=0.0, concurrent=2), True),
    ("workstation", Resources(workers=0, cpu=1.0, gpu=0.0, concurrent=2), False),  # grow_trials: false
    ("local", Resources(workers=0, cpu=1.0, gpu=0.25, concurrent=2), False),  # GPU trials keep what they have
    ("local", Resources(workers=1, cpu=1.0, gpu=0.0, concurrent=2), False),  # so do Ray Train trials
])
def test_every_study_reuses_trial_processes_and_only_in_process_cpu_trials_grow(tmp_path, preset, resources, grows):
    config = build_config(preset, assignments=[("storage", str(tmp_path)), ("name", preset)])
    tuner = new_tuner(config, lambda sampled: None, resources)
    tune_config, run_config = tuner._local_tuner._tune_config, tuner._local_tuner._run_config
    assert tune_config.reuse_actors is True
    shares = [callback for callback in run_config.callbacks if isinstance(callback, ThreadShares)]
    assert len(shares) == grows
    if grows:
        assert (shares[0].base, shares[0].num_samples, shares[0].study_uri) == (1, 4, config.study_uri)
