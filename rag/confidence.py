"""Deciding whether to show an answer: a logistic model over signals of retrieval, evidence, the
answer model's own probabilities and the check against the cited passages, fitted on
evaluation questions whose right outcome is known (`rag calibrate`)."""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import RagError

DEFAULT = Path(__file__).resolve().parent / "confidence.json"

# Each signal, and the value used when it could not be measured (a model that gives no
# probabilities, say): the mean of the data it was fitted on would be better, but these are
# what a signal-less answer honestly has.
FEATURES = {
    "retrieval": 0.0,  # cosine of the best passage found to the question
    "evidence": 0.0,  # score of the best evidence sentence
    "logprob_mean": -1.0,  # mean log-probability of the answer's tokens
    "logprob_min": -5.0,  # the least likely token of the answer
    "support": 0.0,  # share of the answer's own words found in the cited passages
    "coverage": 0.0,  # share of the question's words found in the cited passages
    "local": 0.0,  # the same, around the sentence the answer comes from
    "question_missing": 0.0,  # the question's numbers and names no cited passage states
    "unknown_terms": 0.0,  # the question's words that no document uses at all
}


# The signals the shipped calibration weighs: the best four by cross-validated AUC on the tuning
# sample (docs/QUALITY.md); all ten fitted together did worse on held-out folds (0.60 vs 0.69).
CHOSEN = ("evidence", "logprob_min", "local", "question_missing")


@dataclass(frozen=True)
class Calibration:
    """A fitted logistic model and the threshold below which an answer is withheld."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    fitted_on: dict

    def probability(self, signals: dict) -> float:
        """The fitted probability that an answer with these signals is right."""
        z = self.bias
        for name, m, s, w in zip(self.features, self.mean, self.scale, self.weights):
            z += w * (value(signals, name) - m) / s
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def value(signals: dict, name: str) -> float:
    raw = signals.get(name)
    if raw is None or not math.isfinite(float(raw)):
        return FEATURES[name]
    return float(raw)


def load(path: Path | str | None = None) -> Calibration:
    """The calibration shipped with the package, or one written by `rag calibrate`."""
    path = Path(path or DEFAULT)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Calibration(
            features=tuple(data["features"]),
            mean=tuple(data["mean"]),
            scale=tuple(data["scale"]),
            weights=tuple(data["weights"]),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            fitted_on=dict(data.get("fitted_on", {})),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RagError(
            f"the answer calibration {path} is unreadable ({exc}): reinstall rag, or write a "
            "new one with `rag calibrate REPORT.json`"
        ) from exc


def fit(
    rows: Sequence[tuple[dict, bool]],
    features: Sequence[str] = CHOSEN,
    l2: float = 1.0,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Logistic regression (Newton's method, L2 penalty) of `right` on the signals.

    Returns (weights, bias, mean, scale); features are standardised by mean and scale.
    """
    x = np.array([[value(s, f) for f in features] for s, _ in rows], dtype=np.float64)
    y = np.array([1.0 if right else 0.0 for _, right in rows])
    if len(rows) < 10 or y.min() == y.max():
        raise RagError("calibration needs at least 10 answers, some right and some wrong")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1]), mean, scale


def calibration(
    rows: Sequence[tuple[dict, bool]],
    threshold: float,
    fitted_on: dict,
    features: Sequence[str] = CHOSEN,
) -> Calibration:
    """Fit and package a calibration with its provenance."""
    weights, bias, mean, scale = fit(rows, features)
    fitted_on = {
        **fitted_on,
        "answers": len(rows),
        "right": int(sum(r for _, r in rows)),
        "date": datetime.date.today().isoformat(),
    }
    return Calibration(
        tuple(features),
        tuple(round(float(v), 6) for v in mean),
        tuple(round(float(v), 6) for v in scale),
        tuple(round(float(v), 6) for v in weights),
        round(bias, 6),
        threshold,
        fitted_on,
    )
