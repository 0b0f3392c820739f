"""ASHA with promotions taken back (study.asha) against Ray's ASHA, on the same sequence of results."""

from dataclasses import dataclass

import pytest
from ray.tune.schedulers import ASHAScheduler

from study.asha import RevokingASHA, revoked
from study.config import StudyConfigError, build_config
from study.study import Resources, new_tuner


@dataclass(frozen=True)
class FakeTrial:
    trial_id: str


def actions(scheduler_class, results: list[tuple[str, int, float]]) -> list[str]:
    """The scheduler's action for each (trial, epoch, val_psnr) result, in order, as Tune would hand them over."""
    scheduler = scheduler_class(grace_period=1, reduction_factor=4, max_t=12, metric="val_psnr", mode="max")
    trials = {trial_id: FakeTrial(trial_id) for trial_id, _, _ in results}
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)
    return [scheduler.on_trial_result(None, trials[t], {"training_iteration": epoch, "val_psnr": value}) for t, epoch, value in results]


# a reaches each rung first and goes on; b then beats a at epoch 1 and at epoch 4; a's next epoch comes after.
RESULTS = [("a", 1, 20.0), ("a", 2, 21.0), ("a", 3, 22.0), ("a", 4, 23.0), ("b", 1, 21.0), ("a", 5, 23.5),
           ("b", 2, 22.0), ("b", 3, 23.0), ("b", 4, 24.0), ("a", 6, 24.0), ("b", 5, 24.5)]


def test_rays_asha_keeps_the_first_trial_to_reach_the_last_rung_to_the_end():
    assert actions(ASHAScheduler, RESULTS) == ["CONTINUE"] * len(RESULTS)


def test_a_promotion_is_taken_back_once_a_later_trial_pushes_it_below_the_rungs_cutoff():
    got = actions(RevokingASHA, RESULTS)
    # a at epoch 5: rung 4 holds a alone, rung 1 holds a (20) and b (21), so a's rung-4 score decides: it goes on.
    # a at epoch 6: rung 4 now also holds b (24), above a (23): a stops.
    assert got == ["CONTINUE"] * 9 + ["STOP", "CONTINUE"]


def test_a_trial_stays_when_later_trials_reach_the_rung_below_it():
    later_worse = [("a", 1, 22.0), ("a", 2, 23.0), ("b", 1, 20.0), ("c", 1, 19.0), ("a", 3, 24.0), ("d", 1, 20.5), ("a", 4, 25.0), ("a", 5, 25.5)]
    assert actions(RevokingASHA, later_worse) == ["CONTINUE", "CONTINUE", "STOP", "STOP", "CONTINUE", "STOP", "CONTINUE", "CONTINUE"]


def test_revoked_asks_the_highest_rung_the_trial_reached_against_the_others_there():
    def cutoff(recorded):  # a rung that keeps only its best
        return max(recorded.values()) if recorded else None
    assert not revoked([(4, {"a": 23.0}), (1, {"a": 20.0, "b": 21.0})], "a", cutoff)  # alone on rung 4: b's better epoch 1 no longer counts
    assert revoked([(4, {}), (1, {"a": 20.0, "b": 21.0})], "a", cutoff)  # on its way to rung 4, after b beat it at rung 1
    assert not revoked([(4, {}), (1, {"a": 20.0, "b": 21.0})], "b", cutoff)
    assert not revoked([(4, {}), (1, {"a": 20.0})], "c", cutoff)  # a trial no rung has recorded


def test_the_workstation_preset_takes_promotions_back_and_the_study_runs_it(tmp_path):
    config = build_config("workstation", assignments=[("storage", str(tmp_path)), ("name", "revoking")])
    assert config.revoke_promotions
    tuner = new_tuner(config, lambda sampled: None, Resources(workers=0, cpu=1.0, gpu=0.0, concurrent=2))
    scheduler = tuner._local_tuner._tune_config.scheduler
    assert isinstance(getattr(scheduler, "_base_scheduler", scheduler), RevokingASHA)
    assert build_config("local").revoke_promotions  # the first command too: its time no longer rides on which trial reports first


def test_revoke_promotions_must_be_a_boolean():
    with pytest.raises(StudyConfigError, match="revoke_promotions: expected true or false"):
        build_config("local", assignments=[("revoke_promotions", "sometimes")])


def test_the_asha_cost_bench_feeds_both_schedulers_the_same_studies(capsys):
    from bench_module import load_bench

    rows = load_bench("asha_cost.py").main(["--quick", "--samples", "6"])
    table = capsys.readouterr().out
    assert "grace_period 1, reduction_factor 4, max_t 12, 2 trials at a time; 50 simulated studies a row" in table
    ray_asha, revoking = rows
    assert (ray_asha["scheduler"], revoking["scheduler"]) == ("Ray's ASHA", "revoking ASHA") and ray_asha["trials"] == revoking["trials"] == 6
    assert 6 <= revoking["epochs"] < ray_asha["epochs"] <= 6 * 12  # every trial trains an epoch; none more than max_t
    assert revoking["trials to max_t"] < ray_asha["trials to max_t"]
    assert 0 < revoking["exports the best"] <= 1 and 0 < ray_asha["exports the best"] <= 1
