"""ASHA whose promotions are taken back: a trial trains on past a rung only while it stays in the rung's top 1 in
``reduction_factor``, among every trial the rung has recorded so far, not just those that had reached it before it.

Ray's ASHA decides once, when a trial reaches a rung, against the trials recorded there before it. The first trial to
reach a rung always goes on, and every later trial that beats those before it goes on too, so in a small study the
best-so-far trials (about ln(n) of n in random order) each train to ``max_t``. Checking again at every epoch stops a
promoted trial once later trials have pushed it below the rung's cutoff: the cut a synchronous successive halving would
make over the same trials, without waiting for them. The trial keeps its checkpoints; it ends as stopped by ASHA.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


def revoked(rungs: list[tuple[int, dict[str, float]]], trial_id: str, cutoff: Any) -> bool:
    """Whether ASHA's own test at the highest rung the trial reached, asked again now, would stop it: its score there
    against the cutoff of the other trials the rung has recorded (those before it, as when ASHA let it on, and since).

    ``rungs`` are (milestone, recorded scores by trial id), highest milestone first, scores signed so that higher is
    better (Ray's bracket bookkeeping); ``cutoff`` maps scores by trial id to a rung's cutoff, or None for none.
    """
    for _, recorded in rungs:
        if trial_id in recorded:
            limit = cutoff({other: score for other, score in recorded.items() if other != trial_id})
            return limit is not None and recorded[trial_id] < limit
    return False


class RevokingASHA(ASHAScheduler):
    """``ASHAScheduler`` that also stops a promoted trial once its rung's cutoff has risen above its score (``revoked``)."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action != TrialScheduler.CONTINUE or self._time_attr not in result or self._metric not in result:
            return action
        bracket = self._trial_info[trial.trial_id]
        if revoked(bracket._rungs, trial.trial_id, bracket.cutoff):
            self._num_stopped += 1
            return TrialScheduler.STOP
        return action
