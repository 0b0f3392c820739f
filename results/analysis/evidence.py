"""A finding's evidence: one number with its 95% interval, the value the seed's expectation needs it to pass, and a
verdict in plain words that is never stronger than the interval.

The number is a mean of per-face values over the faces analysed and, where several trained models of the same
settings exist (seeds), over those models too; its interval is the one the experiment statistics give a paired
difference (``results.statistics``: a two-level bootstrap over seeds and faces joined with a t-interval over seeds).
With one model the interval covers face-to-face variation only, and the verdict says so. The expectation holds when
the whole interval lies on its side of the threshold ("supported"), fails when the whole interval lies on the other
side ("not supported"), and otherwise this data cannot tell ("cannot tell"; for a difference against 0: "do not differ").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from results.statistics import CONFIDENCE, Interval, paired_difference

NO_INTERVAL = Interval(math.nan, math.nan, math.nan, 0)


@dataclass(frozen=True)
class Evidence:
    claim: str  # what is measured, in words: "eyes, brows, nose and mouth minus the whole face (PSNR)"
    interval: Interval
    threshold: float  # the expectation needs the measure above it (``above``) or below it
    above: bool
    unit: str = ""  # "dB", or "" for a share or a correlation
    faces: int = 0  # faces behind the number
    condition: str = ""
    between: tuple[str, ...] = ()  # for a difference a - b: (a, b), so an undecided verdict says they "do not differ"
    headline: bool = True  # whether the finding's verdict rests on it (the others are in its table only)

    @property
    def supported(self) -> bool | None:
        low, high = self.interval.low, self.interval.high
        if not (math.isfinite(low) and math.isfinite(high)):
            return None
        if (low > self.threshold) if self.above else (high < self.threshold):
            return True
        if (high < self.threshold) if self.above else (low > self.threshold):
            return False
        return None

    def number(self) -> str:
        digits = 2 if self.unit == "dB" else 3
        unit = f" {self.unit}" if self.unit else ""
        if not math.isfinite(self.interval.estimate):
            return "not measurable"
        estimate = f"{self.interval.estimate:+.{digits}f}{unit}"
        if not (math.isfinite(self.interval.low) and math.isfinite(self.interval.high)):
            return f"{estimate} (no interval)"
        return f"{estimate} [{self.interval.low:+.{digits}f}, {self.interval.high:+.{digits}f}]"

    def size(self) -> str:
        models = self.interval.n
        return f"n = {models} model{'s' * (models != 1)}, {self.faces} faces"

    def outcome(self) -> str:
        """The verdict in two or three words: supported, not supported, do not differ (a difference against 0), or cannot tell."""
        if self.supported is not None:
            return "supported" if self.supported else "not supported"
        return "do not differ" if len(self.between) == 2 and self.threshold == 0 else "cannot tell"

    def verdict(self) -> str:
        """One plain sentence, never stronger than the interval."""
        unit = f" {self.unit}" if self.unit else ""
        at = f" at {self.condition}" if self.condition else ""
        need = f"{'above' if self.above else 'below'} {self.threshold:g}{unit}"
        spread = " (one model: the interval covers face-to-face variation only)" if self.interval.n == 1 else ""
        if not math.isfinite(self.interval.estimate):
            return f"{self.claim}{at} cannot be measured here"
        outcome = self.supported
        if outcome is True:
            return f"{self.claim}{at} is {self.number()}, {need} as expected: supported{spread}"
        if outcome is False:
            return f"{self.claim}{at} is {self.number()}, not {need}: not supported{spread}"
        if len(self.between) == 2 and self.threshold == 0:
            return f"{self.between[0]} and {self.between[1]} do not differ{at} at {self.size()}: {self.claim} is {self.number()}{spread}"
        return f"{self.claim}{at} is {self.number()}, which includes {self.threshold:g}{unit}: cannot tell at {self.size()}{spread}"


def measured(values: np.ndarray, claim: str, threshold: float, above: bool, **details) -> Evidence:
    """Evidence from per-face values, shaped (faces,) for one model or (seeds, faces); a face missing (NaN) for any seed is left out."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    values = values[:, np.isfinite(values).all(axis=0)]
    interval = paired_difference(values, np.zeros_like(values))[0] if values.size else NO_INTERVAL
    return Evidence(claim, interval, threshold, above, faces=values.shape[1], **details)


def overall(evidence: Sequence[Evidence]) -> bool | None:
    """The finding's verdict from its headline evidence: supported when all of it is, not supported when any is not, else None."""
    outcomes = [e.supported for e in evidence if e.headline]
    if not outcomes:
        return None
    if any(outcome is False for outcome in outcomes):
        return False
    return True if all(outcome is True for outcome in outcomes) else None


def verdict_word(supported: bool | None, tested: bool) -> str:
    if not tested:
        return "not testable here"
    return {True: "supported", False: "not supported", None: "cannot tell at this n"}[supported]


def evidence_table(evidence: Sequence[Evidence], compact: bool = False) -> pd.DataFrame:
    """One row per piece of evidence: what, where, the number with its interval, the threshold and the verdict (a sentence;
    ``compact``: the number as text and the verdict in words, for a document)."""
    if compact:
        rows = [{"measure": e.claim, "condition": e.condition, "mean [95% interval]": e.number(), "expected": f"{'>' if e.above else '<'} {e.threshold:g}",
                 "models": e.interval.n, "faces": e.faces, "verdict": e.outcome() + ("" if e.headline else " (not in the verdict)")} for e in evidence]
        return pd.DataFrame(rows, columns=["measure", "condition", "mean [95% interval]", "expected", "models", "faces", "verdict"])
    rows = [{"claim": e.claim, "condition": e.condition, "estimate": e.interval.estimate, "low": e.interval.low, "high": e.interval.high,
             "expected": f"{'>' if e.above else '<'} {e.threshold:g}", "models": e.interval.n, "faces": e.faces, "headline": e.headline,
             "verdict": e.verdict()} for e in evidence]
    columns = ["claim", "condition", "estimate", "low", "high", "expected", "models", "faces", "headline", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def expected_findings(findings: Sequence[Any]) -> pd.DataFrame:
    """One row per ``Finding`` that checks an expectation: the expectation, its headline numbers with their intervals, the verdict."""
    columns = ["finding", "expected", "evidence [95% interval]", "verdict"]
    return pd.DataFrame([{"finding": f.title, "expected": f.expectation, "evidence [95% interval]": headline_text(f.evidence), "verdict": f.verdict}
                         for f in findings if f.expectation], columns=columns)


def headline_text(evidence: Sequence[Evidence]) -> str:
    """The headline numbers, for a summary table: "claim at condition: +0.42 dB [+0.31, +0.55]; ..." """
    return "; ".join(f"{e.claim}{f' at {e.condition}' if e.condition else ''}: {e.number()}" for e in evidence if e.headline)


METHOD = (f"Each number is a mean over the faces analysed (and over the models given, when several were trained alike from different "
          f"seeds) with its {CONFIDENCE:.0%} interval: a bootstrap over seeds and faces joined with a t-interval over seeds, as the "
          "experiments' paired differences have. A verdict is 'supported' only where the whole interval lies on the expected side of "
          "the threshold, 'not supported' where it lies wholly on the other side, and otherwise this data cannot tell.")
