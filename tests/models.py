"""Real scikit-learn models on a bundled dataset, as the files a developer would register
(importable as `models` from tests): skops, ONNX (converted with skl2onnx) and the input
contract derived from the training data."""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from bastion.registry.contract import InputContract
from bastion.serving.convert import to_onnx


@dataclass(frozen=True)
class Trained:
    estimator: Any
    contract: InputContract
    names: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray

    def files(self, *, onnx: bool = True, skops: bool = True) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        if onnx:
            out["model.onnx"] = to_onnx(self.estimator, self.contract)
        if skops:
            out["model.skops"] = sio.dumps(self.estimator)
        return out

    def csv(self) -> bytes:
        """The training rows as a CSV dataset: the feature columns, then `target`."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*self.names, "target"])
        for row, label in zip(self.x, self.y, strict=True):
            writer.writerow([*(repr(float(v)) for v in row), int(label)])
        return out.getvalue().encode()

    def records(self, rows: slice) -> list[dict[str, float]]:
        return [dict(zip(self.names, map(float, row), strict=True)) for row in self.x[rows]]


def _names() -> tuple[str, ...]:
    raw = load_breast_cancer().feature_names
    return tuple(str(n).replace(" ", "_") for n in raw)


@functools.cache
def logistic(seed: int = 0, c: float = 1.0) -> Trained:
    data = load_breast_cancer()
    x, y = data.data, data.target
    model = Pipeline(
        [("scale", StandardScaler()), ("lr", LogisticRegression(C=c, max_iter=2000))]
    ).fit(x, y)
    names = _names()
    contract = InputContract.derive({n: x[:, i].tolist() for i, n in enumerate(names)})
    return Trained(model, contract, names, x, y)


@functools.cache
def forest(trees: int = 20) -> Trained:
    data = load_breast_cancer()
    x, y = data.data, data.target
    model = RandomForestClassifier(n_estimators=trees, max_depth=6, random_state=0).fit(x, y)
    names = _names()
    contract = InputContract.derive({n: x[:, i].tolist() for i, n in enumerate(names)})
    return Trained(model, contract, names, x, y)
