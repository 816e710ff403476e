"""Baseline (b) of `bench/gateway.py`: the least a FastAPI app can do to serve one model.

    .venv/bin/python bench/gateway_bare.py --model model.onnx --features names.json --port N
    .venv/bin/python bench/gateway_bare.py --model model.joblib --features names.json --port N

One POST route, `/v1/models/{name}/predict`, taking `{"records": [{feature: number, ...}]}`
and answering `{"predictions": [{"label": ..., "probabilities": [...]}]}`. The body is read
raw and parsed with orjson (no pydantic model), the rows are built in the training column
order and the model runs inline on the event loop: the point is to measure FastAPI + uvicorn
+ the model and nothing else, which is the floor that the Bastion gateway is compared to.

Two predictors, picked by the model file's suffix:

* `.onnx` — an ONNX Runtime `InferenceSession` (CPUExecutionProvider, one intra-op and one
  inter-op thread, sequential execution) of the model converted by skl2onnx with
  `zipmap=False`, fed float32 rows; outputs `label` and `probabilities`.
* `.joblib` — the scikit-learn estimator itself (variant b'), fed float64 rows, calling
  `predict_proba` and taking the label from `classes_`, so readers see what ONNX buys.

Served by uvicorn with one worker, uvloop + httptools and no access log. `GET /healthz`
answers 200 once the model is loaded (the harness polls it). Malformed bodies get 422 with a
short reason; there is nothing else (no auth, no limits, no metrics) on purpose.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

Predictor = Callable[[list[list[float]]], list[dict[str, Any]]]


def onnx_predictor(path: Path) -> Predictor:
    """An ONNX Runtime session, single-threaded, returning label + probabilities per row."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    label_at, proba_at = output_names.index("label"), output_names.index("probabilities")

    def predict(rows: list[list[float]]) -> list[dict[str, Any]]:
        outputs = session.run(output_names, {input_name: np.asarray(rows, dtype=np.float32)})
        labels, probas = outputs[label_at], outputs[proba_at]
        return [
            {"label": label.item(), "probabilities": proba.tolist()}
            for label, proba in zip(labels, probas, strict=True)
        ]

    return predict


def sklearn_predictor(path: Path) -> Predictor:
    """The scikit-learn estimator itself (`predict_proba`), float64 rows."""
    import joblib

    estimator = joblib.load(path)
    classes = estimator.classes_

    def predict(rows: list[list[float]]) -> list[dict[str, Any]]:
        probas = estimator.predict_proba(np.asarray(rows, dtype=np.float64))
        return [
            {"label": classes[int(np.argmax(proba))].item(), "probabilities": proba.tolist()}
            for proba in probas
        ]

    return predict


def _unprocessable(reason: str) -> Response:
    return Response(orjson.dumps({"detail": reason}), 422, media_type="application/json")


def create_app(predict: Predictor, features: Sequence[str], max_records: int = 1000) -> FastAPI:
    """The app: one predict route and a health check, nothing else."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    columns = tuple(features)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b"ok", media_type="text/plain")

    @app.post("/v1/models/{name}/predict")
    async def predict_route(name: str, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            records = body["records"]
            if not isinstance(records, list) or not 0 < len(records) <= max_records:
                return _unprocessable("records must be a non-empty list")
            rows = [[float(record[column]) for column in columns] for record in records]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return _unprocessable(f"bad request body: {type(exc).__name__}")
        return Response(
            orjson.dumps({"model": name, "predictions": predict(rows)}),
            media_type="application/json",
        )

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, required=True, help=".onnx or .joblib file")
    parser.add_argument("--features", type=Path, required=True, help="JSON list of columns")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    features: list[str] = json.loads(args.features.read_text())
    if args.model.suffix == ".onnx":
        predict = onnx_predictor(args.model)
    elif args.model.suffix == ".joblib":
        predict = sklearn_predictor(args.model)
    else:
        parser.error(f"unknown model format: {args.model.suffix}")
    uvicorn.run(
        create_app(predict, features),
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
