"""Calibration of review-priority scores (`backend.predictions.scoring`) into the probability that a pre-label is
accepted unchanged, learnt per project from its reviewed tasks.

An isotonic (monotone non-decreasing) regression of accepted (1/0) on score, fitted with scikit-learn's
`IsotonicRegression` (y in [0, 1], scores outside the fitted range clipped to its ends). The fitted curve is the
piecewise-linear interpolation through (`thresholds`, `probabilities`); `apply` evaluates it with NumPy, so a
stored calibration needs no scikit-learn. Stored as a JSON-able dict (`to_dict` / `from_dict`).

With `region_model` (`backend.predictions.region_model`, chosen by `backend.jobs.calibration` where it orders the
project's reviewed tasks better), the curve is fitted on, and applied to, that model's score instead of the raw one;
`raw` then holds the curve of the raw score, for tasks the model cannot score (several images, videos). With
`count_model` (`backend.predictions.count_model`, chosen the same way) the curve reads the count score, whose
expected corrections are the region model's where the calibration holds one; tasks without an embedding read `raw`.
With `rate_k` (`backend.predictions.rate_mix`, chosen after them) the curve reads the rate mix of those expected
corrections (and misses) with their share of the task's units, at that k.

Isotonic curves have flat steps: tasks on one step get the same probability. A caller that sorts by the
calibrated value and wants the raw order kept inside a step should break ties with the raw score.

An order-only curve (`order_only`, `probability` False) is the identity: where a project chose a region or count
model but its reviewed tasks hold one outcome only (a dense-object project where every pre-label needed some
correction), no probability of acceptance can be fitted, yet the model still orders the tasks better than the raw
score. The value served is then the model's own score (1 / (1 + expected corrections)), not a probability.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from backend.predictions.count_model import CountModel, CountModelError
from backend.predictions.region_model import RegionModel, RegionModelError

FORMAT = "isotonic/1"
MIN_REVIEWED = 20


class CalibrationError(ValueError):
    """Too few reviewed tasks, only one outcome among them, or a malformed stored calibration."""


@dataclass(frozen=True)
class ScoreCalibration:
    """score → P(pre-label accepted unchanged).

    thresholds: float64 (K,) increasing scores in [0, 1]; probabilities: float64 (K,) non-decreasing in
    [0, 1], the curve's values there; n_reviewed / n_accepted: the reviewed tasks it was fitted on; region_model:
    the learned model whose score the curve reads (None: the raw score); count_model: the count model whose score
    the curve reads instead (on top of region_model's expected corrections when both are held); rate_k: the rate
    mix's k, whose score the curve reads instead (of the expected corrections and misses of the models held; None:
    no mix); raw: with any of them, the raw score's own curve (None when it could not be fitted); probability:
    whether the curve's values are fitted probabilities of acceptance (False: the identity of `order_only`, the
    model's score passed through).
    """

    thresholds: np.ndarray
    probabilities: np.ndarray
    n_reviewed: int
    n_accepted: int
    region_model: RegionModel | None = None
    raw: "ScoreCalibration | None" = None
    count_model: CountModel | None = None
    probability: bool = True
    rate_k: float | None = None

    @classmethod
    def order_only(cls, n_reviewed: int, n_accepted: int) -> "ScoreCalibration":
        """The identity curve on [0, 1], no probability: for a model's score that orders reviewed tasks holding one
        outcome only (`n_accepted` 0 or `n_reviewed`)."""
        return cls(np.array([0.0, 1.0]), np.array([0.0, 1.0]), int(n_reviewed), int(n_accepted), probability=False)

    def with_region_model(self, model: RegionModel, raw: "ScoreCalibration | None") -> "ScoreCalibration":
        """This curve read as the learned score of `model`, with `raw` (the raw score's curve) beside it."""
        return replace(self, region_model=model, raw=raw)

    def with_count_model(self, model: CountModel, region_model: RegionModel | None,
                         raw: "ScoreCalibration | None") -> "ScoreCalibration":
        """This curve read as the count score of `model` (expected corrections from `region_model` when given), with
        `raw` (the raw score's curve) beside it."""
        return replace(self, count_model=model, region_model=region_model, raw=raw)

    def with_rate_mix(self, k: float, region_model: RegionModel | None, count_model: CountModel | None,
                      raw: "ScoreCalibration | None") -> "ScoreCalibration":
        """This curve read as the rate mix at `k` of the expected corrections of `region_model` (else the two views'
        agreement errors) and the misses of `count_model` (when given), with `raw` beside it."""
        return replace(self, rate_k=float(k), region_model=region_model, count_model=count_model, raw=raw)

    @property
    def reads_model(self) -> bool:
        """Whether the curve reads a score of the two views other than the raw one (region or count model, rate
        mix)."""
        return self.region_model is not None or self.count_model is not None or self.rate_k is not None

    @classmethod
    def fit(cls, scores, accepted, min_reviewed: int = MIN_REVIEWED) -> "ScoreCalibration":
        """Fit on reviewed tasks: scores float (N,) in [0, 1], accepted bool (N,) (True = accepted unchanged).

        Raises `CalibrationError` with fewer than `min_reviewed` tasks or when all have the same outcome.
        """
        from sklearn.isotonic import IsotonicRegression  # only fitting needs it

        x = np.asarray(scores, np.float64).reshape(-1)
        y = np.asarray(accepted, bool).reshape(-1)
        if x.size != y.size:
            raise CalibrationError(f"{x.size} scores but {y.size} outcomes")
        if x.size < min_reviewed:
            raise CalibrationError(f"{x.size} reviewed tasks; calibration needs at least {min_reviewed}")
        if not np.isfinite(x).all():
            raise CalibrationError("scores must be finite")
        n_accepted = int(y.sum())
        if n_accepted in (0, y.size):
            outcome = "accepted" if n_accepted else "corrected"
            raise CalibrationError(f"all {y.size} reviewed tasks were {outcome}; calibration needs both outcomes")
        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        model.fit(np.clip(x, 0.0, 1.0), y.astype(np.float64))
        return cls(np.asarray(model.X_thresholds_, np.float64), np.asarray(model.y_thresholds_, np.float64),
                   int(y.size), n_accepted)

    def apply(self, score):
        """Probability(ies) in [0, 1]: a float for a scalar score, float64 array for an array of scores."""
        x = np.clip(np.asarray(score, np.float64), 0.0, 1.0)
        out = np.interp(x, self.thresholds, self.probabilities)
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        """JSON-able: {"format", "thresholds", "probabilities", "n_reviewed", "n_accepted"[, "probability": false]
        [, "region_model"][, "count_model"][, "rate_k"][, "raw"]}."""
        out = {"format": FORMAT, "thresholds": [float(v) for v in self.thresholds],
               "probabilities": [float(v) for v in self.probabilities],
               "n_reviewed": self.n_reviewed, "n_accepted": self.n_accepted}
        if not self.probability:
            out["probability"] = False
        if not self.reads_model:
            return out
        models = {"region_model": self.region_model, "count_model": self.count_model}
        mix = {"rate_k": self.rate_k} if self.rate_k is not None else {}
        return {**out, **{key: model.to_dict() for key, model in models.items() if model is not None}, **mix,
                "raw": self.raw.to_dict() if self.raw else None}

    @classmethod
    def from_dict(cls, stored: dict) -> "ScoreCalibration":
        """The inverse of `to_dict`; raises `CalibrationError` for anything else."""
        try:
            if stored["format"] != FORMAT:
                raise CalibrationError(f"calibration format {stored['format']!r}, expected {FORMAT!r}")
            x = np.asarray(stored["thresholds"], np.float64).reshape(-1)
            y = np.asarray(stored["probabilities"], np.float64).reshape(-1)
            n_reviewed, n_accepted = int(stored["n_reviewed"]), int(stored["n_accepted"])
            region_model = RegionModel.from_dict(stored["region_model"]) if stored.get("region_model") else None
            count_model = CountModel.from_dict(stored["count_model"]) if stored.get("count_model") else None
            rate_k = stored.get("rate_k")
            if rate_k is not None and (isinstance(rate_k, bool) or not float(rate_k) > 0 or
                                       not np.isfinite(float(rate_k))):
                raise CalibrationError(f"calibration 'rate_k' must be a positive number, not {rate_k!r}")
            rate_k = None if rate_k is None else float(rate_k)
            reads_model = region_model is not None or count_model is not None or rate_k is not None
            raw = cls.from_dict(stored["raw"]) if reads_model and stored.get("raw") else None
            probability = stored.get("probability", True)
            if not isinstance(probability, bool):
                raise CalibrationError(f"calibration 'probability' must be true or false, not {probability!r}")
        except (RegionModelError, CountModelError) as exc:
            raise CalibrationError(str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise
            raise CalibrationError(f"malformed calibration: {exc!r}") from None
        if x.size == 0 or x.size != y.size or not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise CalibrationError("calibration needs equally many finite thresholds and probabilities")
        if (np.diff(x) <= 0).any() or (np.diff(y) < 0).any() or y.min() < 0 or y.max() > 1:
            raise CalibrationError("calibration must be increasing in score and monotone in [0, 1]")
        return cls(x, y, n_reviewed, n_accepted, region_model, raw, count_model, probability, rate_k)
