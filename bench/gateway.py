"""Throughput and latency of the inference gateway against two baselines, in one run.

    .venv/bin/python bench/gateway.py [--quick] [--repeat N] [--bare-sklearn] [--json FILE]

For each model — a `Pipeline(StandardScaler, LogisticRegression)` and a 100-tree
`RandomForestClassifier`, both trained here on scikit-learn's bundled breast-cancer data
(30 numeric features) — every system below serves the same fitted estimator, and `hey` (a
separate process, keep-alive, loopback) POSTs ONE row of 30 features as JSON at concurrency
1, 8 and 64:

* (a) Bastion with every control on (auth, contract, rate limit, receipts, metrics):
  `start_bastion`, still a TODO for the lead; skipped with a note while it raises
  NotImplementedError.
* (b) `bench/gateway_bare.py`: FastAPI + uvicorn (1 worker, uvloop, httptools, no access log)
  calling an ONNX Runtime session (1 thread) of the skl2onnx conversion (`zipmap=False`).
* (b') with `--bare-sklearn`: the same app calling the scikit-learn estimator directly.
* (c) MLServer + mlserver-sklearn, from a venv cached in `.bench/mlserver-venv` (created with
  `python3 -m venv` and pip on first use, scikit-learn pinned to the project's version so the
  joblib file loads — if that pin cannot be installed, the venv's own scikit-learn trains the
  model it serves — and uvloop < 0.22, see MLSERVER_REQUIREMENTS). Its settings are its
  defaults (notably `parallel_workers` and `debug`), except loopback ports for HTTP, gRPC and
  metrics; `--mlserver-setting KEY=JSON` overrides any of them.

Every cell (system x concurrency) is a warm-up run (2 s) then a measured run (8 s; `--quick`:
1 s + 2 s), `--repeat` times; systems are interleaved within each concurrency so that the
noise of a shared machine spreads over all of them, and the report shows medians. `hey`'s
Requests/sec, 50% and 99% latencies (0.1 ms resolution) and status codes are parsed from its
text output; any non-2xx response or transport error is counted and the cell is flagged, never
silently averaged in (the exit status is then 1), and req/s counts 2xx answers only, so fast
rejections (a tripped rate limit) cannot pass for throughput. Before measuring, one request
to each system must return 200 with the label scikit-learn predicts for that row.

Report: a table per model, then the ratios against their targets — a/c throughput (>= 1.5x on
the logistic regression, >= 5x on the forest), a/b throughput (within 1.3x, i.e. >= 0.77) and
p50(a) - p50(b) at c=1 (the cost of the controls, <= 1 ms) — with b/c, b/b' alongside for
reference, the machine and the versions. `--json FILE` writes every run's raw numbers.

Everything started here runs in its own process group on a free 127.0.0.1 port and is stopped
in `finally` (SIGTERM, then SIGKILL of the group); every wait is bounded. Exit status 2 when
`hey` is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"
BARE_APP = Path(__file__).resolve().parent / "gateway_bare.py"

MODELS = ("logreg", "forest")
MODEL_TITLES = {
    "logreg": "logistic regression: Pipeline(StandardScaler, LogisticRegression(max_iter=1000))",
    "forest": "random forest: RandomForestClassifier(n_estimators=100, random_state=0)",
}
SYSTEMS = ("a", "b", "b'", "c")
SYSTEM_TITLES = {
    "a": "(a) Bastion, all controls",
    "b": "(b) bare FastAPI + ORT",
    "b'": "(b') bare FastAPI + sklearn",
    "c": "(c) MLServer",
}
# Throughput of (a) over (c), per model; (a) over (b); and the p50 cost of the controls.
TARGET_A_OVER_C = {"logreg": 1.5, "forest": 5.0}
TARGET_A_OVER_B = 1 / 1.3
TARGET_OVERHEAD_MS = 1.0
ROW_INDEX = 0  # the dataset row every request carries
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


class BenchError(Exception):
    """A system could not be set up or did not answer as expected."""


# --------------------------------------------------------------------------------------------
# targets and processes


@dataclass(frozen=True)
class Target:
    """One running system under load: where to POST, with which headers and body."""

    url: str
    headers: Mapping[str, str]
    body_file: Path
    stop: Callable[[], None]
    # Extracts the predicted label from the decoded JSON answer; None skips the label check.
    label_of: Callable[[Any], object] | None = None
    notes: str = ""


class Processes:
    """Starts servers in their own process groups and stops every one of them."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], cwd: Path, log: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - argv built here from fixed parts and paths
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        self._running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the group, wait, then SIGKILL whatever of the group is left."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT_S)
        if proc in self._running:
            self._running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self._running)):
            self.stop(proc)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _request(
    port: int, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] = {}
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=dict(headers))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(
    port: int, path: str, proc: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    """Poll GET path until 200; fail early if the process died, late after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"exited with {proc.returncode} before ready:\n{_tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if _request(port, "GET", path)[0] == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"not ready after {timeout:.0f}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def check_target(target: Target, expected_label: object) -> None:
    """One request before the load: 200, JSON, and the label scikit-learn predicts."""
    url = target.url.removeprefix("http://")
    hostport, _, path = url.partition("/")
    port = int(hostport.rpartition(":")[2])
    headers = {"Content-Type": "application/json", **target.headers}
    status, body = _request(port, "POST", "/" + path, target.body_file.read_bytes(), headers)
    if status != 200:
        raise BenchError(f"check request: HTTP {status}: {body[:300]!r}")
    if target.label_of is not None:
        label = target.label_of(json.loads(body))
        if label != expected_label:
            raise BenchError(f"check request: label {label!r}, scikit-learn says {expected_label}")


# --------------------------------------------------------------------------------------------
# models


@dataclass(frozen=True)
class ModelCase:
    """A fitted estimator, its files and the one row every request carries."""

    key: str
    estimator: Any
    joblib_path: Path
    onnx_path: Path
    features_path: Path
    features: tuple[str, ...]
    row: tuple[float, ...]
    expected_label: int
    expected_proba: tuple[float, ...]


def build_estimator(key: str) -> Any:
    """The unfitted estimator for a model key (also run inside the MLServer venv)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if key == "logreg":
        return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))])
    if key == "forest":
        return RandomForestClassifier(n_estimators=100, random_state=0)
    raise ValueError(f"unknown model {key!r}")


def train_to(key: str, path: Path) -> Any:
    """Fit the model on the bundled dataset and dump it with joblib; returns it."""
    import joblib
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    estimator = build_estimator(key).fit(x, y)
    joblib.dump(estimator, path)
    return estimator


def dataset_row() -> tuple[tuple[str, ...], tuple[float, ...]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    features = tuple(str(name) for name in data.feature_names)
    return features, tuple(float(v) for v in data.data[ROW_INDEX])


def write_records_body(path: Path) -> Path:
    """`{"records": [{feature: value, ...}]}` with the benchmark row: (b)'s request body.

    Also for `start_bastion`, if the gateway's contract takes the same shape.
    """
    features, row = dataset_row()
    record = dict(zip(features, row, strict=True))
    path.write_text(json.dumps({"records": [record]}, separators=(",", ":")))
    return path


def prepare_model(key: str, workdir: Path) -> ModelCase:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer

    folder = workdir / key
    folder.mkdir()
    joblib_path = folder / "model.joblib"
    estimator = train_to(key, joblib_path)
    x = load_breast_cancer().data
    onnx_model = to_onnx(estimator, x[:1].astype(np.float32), options={"zipmap": False})
    onnx_path = folder / "model.onnx"
    onnx_path.write_bytes(onnx_model.SerializeToString())
    features, row = dataset_row()
    features_path = folder / "features.json"
    features_path.write_text(json.dumps(list(features)))
    proba = estimator.predict_proba(np.asarray([row]))[0]
    return ModelCase(
        key=key,
        estimator=estimator,
        joblib_path=joblib_path,
        onnx_path=onnx_path,
        features_path=features_path,
        features=features,
        row=row,
        expected_label=int(estimator.predict(np.asarray([row]))[0]),
        expected_proba=tuple(float(p) for p in proba),
    )


# --------------------------------------------------------------------------------------------
# (a) Bastion


def feature_names() -> list[str]:
    """The dataset's feature names as contract field names (no spaces)."""
    from sklearn.datasets import load_breast_cancer

    return [str(n).replace(" ", "_") for n in load_breast_cancer().feature_names]


def prepare_bastion_home(home: Path, scratch: Path, model: str, estimators: Sequence[Any]) -> str:
    """A Bastion home whose endpoint `model` serves version 1 of `estimators`, each one
    registered the real way: converted to ONNX (checked on the training rows), scanned,
    sealed, signed, attested and approved; version 1 deployed through the deploy gate.
    Returns an inference client's token scoped to the endpoint, and writes the deployer's
    token to `home/deployer.token` (mode 0600)."""
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer

    from bastion.core.settings import Settings
    from bastion.identity import Role
    from bastion.platform import Platform
    from bastion.registry import ModelSpec, VersionSpec
    from bastion.registry.contract import InputContract
    from bastion.serving.convert import convert_skops

    data = load_breast_cancer()
    names = feature_names()
    contract = InputContract.derive({n: data.data[:, i].tolist() for i, n in enumerate(names)})
    records = [dict(zip(names, map(float, row), strict=True)) for row in data.data[:256]]
    with Platform.initialise(Settings(home=home)) as platform:
        _, issued = platform.bootstrap_admin("admin")
        admin = platform.tokens.authenticate(issued.secret)

        def principal(name: str, role: Role, resources: tuple[str, ...] = ()) -> str:
            made = platform.principals.add(admin, name=name, roles=[role])
            return platform.tokens.create(admin, principal_id=made.id, resources=resources).secret

        dev = platform.tokens.authenticate(principal("dev", Role.MODEL_DEVELOPER))
        approver = platform.tokens.authenticate(principal("approver", Role.APPROVER))
        deployer_token = principal("ops", Role.DEPLOYER)
        deployer = platform.tokens.authenticate(deployer_token)
        client = principal("client", Role.INFERENCE_CLIENT, (f"endpoint:{model}",))
        for index, estimator in enumerate(estimators):
            model_dir = scratch / f"model-{index}"
            model_dir.mkdir(parents=True)
            skops_bytes = sio.dumps(estimator)
            onnx_bytes, _ = convert_skops(
                skops_bytes, contract, allowlist=platform.models.allowlist, records=records
            )
            (model_dir / "model.skops").write_bytes(skops_bytes)
            (model_dir / "model.onnx").write_bytes(onnx_bytes)
            upload = platform.staging.create(dev)
            platform.staging.add_tree(dev, upload.id, model_dir)
            version = platform.models.register_version(
                dev,
                model,
                upload.id,
                VersionSpec(input_contract=contract.to_json()),
                create=ModelSpec(purpose="bench"),
            )
            platform.signatures.sign(dev, model, version.version)
            platform.attestations.attest(
                dev,
                model,
                version.version,
                "https://bastion.dev/attestations/validation/v1",
                {"passed": True},
            )
            platform.approvals.approve(approver, model, version.version)
        platform.deployments.deploy(deployer, model, model, 1)
    token_file = home / "deployer.token"
    token_file.write_text(deployer_token)
    token_file.chmod(0o600)
    return client


def start_bastion_server(
    procs: Processes, home: Path, folder: Path, **settings: str
) -> tuple[int, subprocess.Popen[bytes]]:
    """`bastion server` on `home` with rate limits high enough never to refuse (so their
    bookkeeping runs on every request without tripping); its port once it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        BASTION_HOME=str(home),
        BASTION_LISTEN=f"127.0.0.1:{port}",
        BASTION_RATELIMIT_PRINCIPAL_RATE="1000000",
        BASTION_RATELIMIT_PRINCIPAL_BURST="10000000",
        BASTION_RATELIMIT_ENDPOINT_RATE="1000000",
        BASTION_RATELIMIT_ENDPOINT_BURST="10000000",
        **settings,
    )
    bastion = Path(sys.executable).parent / "bastion"
    log = folder / "server.log"
    proc = procs.start([str(bastion), "server"], cwd=folder, log=log, env=env)
    try:
        wait_ready(port, "/healthz", proc, log, START_TIMEOUT_S)
    except BaseException:
        procs.stop(proc)
        raise
    return port, proc


def start_bastion(procs: Processes, case: ModelCase, workdir: Path) -> Target:
    """(a): `bastion server` serving the same estimator with every control on: a token
    checked and authorized per request (scoped to the endpoint), the input contract derived
    from the training data, token-bucket rate limits per principal and per endpoint (set high
    enough never to refuse, so their bookkeeping runs on every request), a receipt per
    prediction with HMAC digests queued to the prediction log, Prometheus metrics. The model
    goes the real way: converted to ONNX at registration, scanned, sealed, signed, attested,
    approved and deployed through the policy gates."""
    folder = workdir / f"bastion-{case.key}"
    home = folder / "home"
    client = prepare_bastion_home(home, folder, case.key, [case.estimator])
    port, proc = start_bastion_server(procs, home, folder)
    body = folder / "body.json"
    row = dict(zip(feature_names(), case.row, strict=True))
    body.write_text(json.dumps({"records": [row]}, separators=(",", ":")))
    return Target(
        url=f"http://127.0.0.1:{port}/v1/endpoints/{case.key}/predict",
        headers={"Authorization": f"Bearer {client}"},
        body_file=body,
        stop=lambda: procs.stop(proc),
        label_of=lambda answer: answer["outputs"]["label"][0],
        notes="bastion server (uvicorn 1 worker, uvloop, httptools), ONNX Runtime; auth, "
        "contract, rate limits, receipts, metrics on",
    )


# --------------------------------------------------------------------------------------------
# (b), (b') bare FastAPI


def start_bare(procs: Processes, case: ModelCase, workdir: Path, *, use_sklearn: bool) -> Target:
    port = free_port()
    variant = "sklearn" if use_sklearn else "onnx"
    log = workdir / f"bare-{variant}-{case.key}.log"
    model = case.joblib_path if use_sklearn else case.onnx_path
    argv = [sys.executable, str(BARE_APP), "--model", str(model)]
    argv += ["--features", str(case.features_path), "--port", str(port)]
    proc = procs.start(argv, cwd=ROOT, log=log)
    try:
        wait_ready(port, "/healthz", proc, log, START_TIMEOUT_S)
    except BaseException:
        procs.stop(proc)
        raise
    body = write_records_body(workdir / f"bare-{case.key}.json")
    return Target(
        url=f"http://127.0.0.1:{port}/v1/models/{case.key}/predict",
        headers={},
        body_file=body,
        stop=lambda: procs.stop(proc),
        label_of=lambda answer: answer["predictions"][0]["label"],
        notes=f"uvicorn 1 worker, uvloop, httptools, {variant}",
    )


# --------------------------------------------------------------------------------------------
# (c) MLServer


# uvloop < 0.22: with 0.22+, MLServer 1.7.1's inference workers die at start ("There is no
# current event loop", SeldonIO/MLServer#2286), so no model ever loads with parallel_workers>0.
MLSERVER_REQUIREMENTS = ("mlserver", "mlserver-sklearn", "uvloop<0.22")


@dataclass(frozen=True)
class MLServerEnv:
    venv: Path
    pinned: bool
    versions: Mapping[str, str]
    defaults: Mapping[str, Any]


_VENV_PROBE = """
import json, importlib.metadata as m
from mlserver.settings import Settings
s = Settings()
print(json.dumps({
    "versions": {p: m.version(p) for p in ("mlserver", "mlserver-sklearn", "scikit-learn",
                                           "numpy", "uvloop")},
    "defaults": {"parallel_workers": s.parallel_workers, "debug": s.debug},
}))
"""


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_mlserver_venv(sklearn_version: str, log: Path) -> MLServerEnv:
    """The cached MLServer venv; created (python3 -m venv + pip) when missing or stale."""
    venv = CACHE / "mlserver-venv"
    marker = venv / ".bench-ready.json"
    wanted = [*MLSERVER_REQUIREMENTS, f"scikit-learn=={sklearn_version}"]
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(marker.read_text())
    if state.get("requested") != wanted or not (venv / "bin" / "mlserver").exists():
        python3 = shutil.which("python3")
        if python3 is None:
            raise BenchError("python3 not found to create the MLServer venv")
        print(f"setting up {venv.relative_to(ROOT)}: pip install {' '.join(wanted)} ...")
        CACHE.mkdir(exist_ok=True)
        with log.open("ab") as out:

            def run(*argv: str) -> int:
                done = subprocess.run(  # noqa: S603 - fixed argv
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=1200, check=False
                )
                return done.returncode

            if run(python3, "-m", "venv", str(venv)) != 0:
                raise BenchError(f"python3 -m venv failed, see {log}")
            pip = str(venv / "bin" / "pip")
            pinned = run(pip, "install", *wanted) == 0
            if not pinned and run(pip, "install", *MLSERVER_REQUIREMENTS) != 0:
                raise BenchError(f"pip install {' '.join(MLSERVER_REQUIREMENTS)} failed, see {log}")
        state = {"requested": wanted, "pinned": pinned}
        marker.write_text(json.dumps(state))
    probe = subprocess.run(  # noqa: S603 - fixed argv
        [str(_venv_python(venv)), "-c", _VENV_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        raise BenchError(f"MLServer venv is broken: {probe.stderr[-500:]}")
    info = json.loads(probe.stdout)
    return MLServerEnv(venv, bool(state["pinned"]), info["versions"], info["defaults"])


_LOAD_CHECK = """
import json, sys, joblib, numpy as np
model = joblib.load(sys.argv[1])
print(json.dumps(model.predict_proba(np.asarray([json.loads(sys.argv[2])]))[0].tolist()))
"""


def mlserver_model_file(env: MLServerEnv, case: ModelCase, folder: Path) -> tuple[Path, str]:
    """The joblib file MLServer serves: ours if its venv loads it to the same probabilities,
    else one trained by the venv's own scikit-learn (same code, same seed)."""
    target = folder / "model.joblib"
    shutil.copyfile(case.joblib_path, target)
    check = subprocess.run(  # noqa: S603 - fixed argv
        [str(_venv_python(env.venv)), "-c", _LOAD_CHECK, str(target), json.dumps(case.row)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check.returncode == 0:
        proba = json.loads(check.stdout)
        if all(abs(a - b) < 1e-9 for a, b in zip(proba, case.expected_proba, strict=True)):
            return target, "same joblib file as (b')"
    retrain = subprocess.run(  # noqa: S603 - fixed argv
        [str(_venv_python(env.venv)), __file__, "train", case.key, str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if retrain.returncode != 0:
        raise BenchError(f"training in the MLServer venv failed: {retrain.stderr[-500:]}")
    return target, f"retrained in the MLServer venv (scikit-learn {env.versions['scikit-learn']})"


def start_mlserver(
    procs: Processes,
    env: MLServerEnv,
    case: ModelCase,
    workdir: Path,
    overrides: Mapping[str, Any],
) -> Target:
    root = workdir / f"mlserver-{case.key}"
    model_dir = root / case.key
    model_dir.mkdir(parents=True)
    _, provenance = mlserver_model_file(env, case, model_dir)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        **overrides,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings = {
        "name": case.key,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    log = workdir / f"mlserver-{case.key}.log"
    proc = procs.start([str(env.venv / "bin" / "mlserver"), "start", str(root)], cwd=root, log=log)
    try:
        wait_ready(http_port, f"/v2/models/{case.key}/ready", proc, log, START_TIMEOUT_S)
    except BaseException:
        procs.stop(proc)
        raise
    body = workdir / f"mlserver-{case.key}.json"
    tensor = {"name": "input-0", "shape": [1, len(case.row)], "datatype": "FP64"}
    payload = {"inputs": [{**tensor, "data": list(case.row)}]}
    body.write_text(json.dumps(payload, separators=(",", ":")))
    effective = {**env.defaults, **overrides}
    return Target(
        url=f"http://127.0.0.1:{http_port}/v2/models/{case.key}/infer",
        headers={},
        body_file=body,
        stop=lambda: procs.stop(proc),
        label_of=lambda answer: answer["outputs"][0]["data"][0],
        notes=(
            f"parallel_workers={effective['parallel_workers']}, debug={effective['debug']}"
            f"{' (overridden)' if overrides else ' (MLServer defaults)'}; model: {provenance}"
        ),
    )


# --------------------------------------------------------------------------------------------
# load generation


@dataclass
class Run:
    """One measured `hey` run; `rps` is hey's Requests/sec, which counts failures too."""

    rps: float
    p50_ms: float | None
    p99_ms: float | None
    statuses: dict[str, int]
    errors: dict[str, int]

    @property
    def responses(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok_rps(self) -> float:
        """Throughput of 2xx answers only: fast rejections (429, 401...) must not count."""
        total = self.responses + sum(self.errors.values())
        ok = sum(n for code, n in self.statuses.items() if code.startswith("2"))
        return self.rps * ok / total if total else 0.0

    @property
    def failures(self) -> int:
        bad = sum(n for code, n in self.statuses.items() if not code.startswith("2"))
        return bad + sum(self.errors.values())


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_PERCENTILE = re.compile(r"^\s*(\d+)%\s+in\s+([\d.]+)\s+secs", re.MULTILINE)
_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+)\s+responses", re.MULTILINE)
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.+?)\s*$")


def parse_hey(text: str) -> Run:
    """Requests/sec, the 50%/99% latencies, status codes and errors of hey's text report."""
    rps = _RPS.search(text)
    if rps is None:
        raise BenchError(f"no Requests/sec in hey's output:\n{text[-800:]}")
    percentiles = {int(p): float(s) * 1000 for p, s in _PERCENTILE.findall(text)}
    statuses = {code: int(n) for code, n in _STATUS.findall(text)}
    errors: dict[str, int] = {}
    _, found, tail = text.partition("Error distribution:")
    if found:
        for line in tail.splitlines():
            match = _ERROR.match(line)
            if match:
                message = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", match.group(2))
                errors[message] = errors.get(message, 0) + int(match.group(1))
    return Run(float(rps.group(1)), percentiles.get(50), percentiles.get(99), statuses, errors)


def run_hey(hey: str, target: Target, concurrency: int, seconds: float) -> Run:
    argv = [hey, "-z", f"{seconds:g}s", "-c", str(concurrency), "-m", "POST"]
    argv += ["-T", "application/json", "-D", str(target.body_file)]
    for name, value in target.headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(target.url)
    done = subprocess.run(  # noqa: S603 - argv built here
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"hey exited {done.returncode}: {done.stderr[-500:]}")
    return parse_hey(done.stdout)


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        return statistics.median(values) if values else None

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.runs)


# --------------------------------------------------------------------------------------------
# report


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def model_report(
    key: str,
    cells: Mapping[str, Mapping[int, Cell]],
    skipped: Mapping[str, str],
    notes: Mapping[str, str],
    concurrency: Sequence[int],
    repeat: int,
) -> dict[str, Any]:
    """Print one model's table and ratios; return the ratios for the JSON file."""
    print(f"\n{MODEL_TITLES[key]} — 1 row x 30 features, median of {repeat} run(s) per cell")
    print(f"  {'system':<30} {'c':>3} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  errors")
    print(f"  {'(req/s counts 2xx answers only)':<30}")
    for system in SYSTEMS:
        title = SYSTEM_TITLES[system]
        if system in skipped:
            print(f"  {title:<30}   skipped: {skipped[system]}")
            continue
        if system not in cells:
            continue
        for c in concurrency:
            cell = cells[system][c]
            flag = f"{cell.failures} !! FLAGGED" if cell.failures else "0"
            print(
                f"  {title:<30} {c:>3} {_fmt(cell.median('ok_rps'), '9.1f')}"
                f" {_fmt(cell.median('p50_ms'), '8.2f')} {_fmt(cell.median('p99_ms'), '8.2f')}"
                f"  {flag}"
            )
            title = ""
        if notes.get(system):
            print(f"  {'':<30}     {notes[system]}")

    def rps(system: str, c: int) -> float | None:
        return cells[system][c].median("ok_rps") if system in cells else None

    def p50(system: str, c: int) -> float | None:
        return cells[system][c].median("p50_ms") if system in cells else None

    header = "".join(f"{'c=' + str(c):>9}" for c in concurrency)
    print(f"  {'throughput ratios':<30}{header}   target")
    ratios: dict[str, Any] = {}
    rows = [
        ("a/c", "a", "c", TARGET_A_OVER_C[key], f">= {TARGET_A_OVER_C[key]:g}x"),
        ("a/b", "a", "b", TARGET_A_OVER_B, ">= 0.77x (within 1.3x)"),
        ("b/c", "b", "c", None, "(reference)"),
        ("b'/c", "b'", "c", None, "(reference)"),
        ("b/b'", "b", "b'", None, "(reference: what ONNX buys)"),
    ]
    for name, top, bottom, target, label in rows:
        values = {c: _ratio(rps(top, c), rps(bottom, c)) for c in concurrency}
        if target is None and all(v is None for v in values.values()):
            continue
        ratios[name] = {str(c): v for c, v in values.items()}
        shown = "".join(
            f"{_fmt(v, '8.2f') + ('x' if v is not None else ' '):>9}" for v in values.values()
        )
        verdict = ""
        if target is not None and all(v is not None for v in values.values()):
            met = all(v is not None and v >= target for v in values.values())
            verdict = "  ok" if met else "  MISS"
        print(f"  {name:<30}{shown}   {label}{verdict}")
    overhead = None
    if 1 in concurrency:
        a_p50, b_p50 = p50("a", 1), p50("b", 1)
        overhead = a_p50 - b_p50 if a_p50 is not None and b_p50 is not None else None
    verdict = "" if overhead is None else ("  ok" if overhead <= TARGET_OVERHEAD_MS else "  MISS")
    print(
        f"  {'p50(a) - p50(b) at c=1':<30}{_fmt(overhead, '8.2f') + ' ms':>9}"
        f"{'':>{9 * (len(concurrency) - 1)}}   <= {TARGET_OVERHEAD_MS:g} ms{verdict}"
    )
    ratios["overhead_p50_ms_c1"] = overhead
    return ratios


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
    }


def project_versions() -> dict[str, str]:
    from importlib import metadata

    names = ("onnxruntime", "scikit-learn", "skl2onnx", "numpy", "fastapi", "uvicorn")
    versions = {name: metadata.version(name) for name in names}
    versions["python"] = platform.python_version()
    dpkg = shutil.which("dpkg-query")
    if dpkg:
        done = subprocess.run(  # noqa: S603 - fixed argv
            [dpkg, "-W", "-f", "${Version}", "hey"], capture_output=True, text=True, check=False
        )
        versions["hey"] = done.stdout.strip() or "unknown"
    return versions


# --------------------------------------------------------------------------------------------
# main


def _parse_setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected KEY=JSON, e.g. parallel_workers=0")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{key}: value is not JSON") from exc


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gateway benchmark: Bastion vs bare vs MLServer")
    parser.add_argument("--quick", action="store_true", help="2 s cells, 1 s warm-up")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 8)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per cell (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; medians reported")
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated")
    parser.add_argument("--models", default=",".join(MODELS), help="logreg,forest")
    parser.add_argument("--systems", default="a,b,c", help="any of a,b,b',c")
    parser.add_argument("--bare-sklearn", action="store_true", help="add (b'): bare + sklearn")
    parser.add_argument(
        "--mlserver-setting",
        type=_parse_setting,
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override an MLServer settings.json key (default: MLServer's own defaults)",
    )
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.models = [m for m in args.models.split(",") if m]
    args.systems = [s for s in args.systems.split(",") if s]
    if args.bare_sklearn and "b'" not in args.systems:
        args.systems.append("b'")
    for name, allowed in (("models", MODELS), ("systems", SYSTEMS)):
        unknown = set(getattr(args, name)) - set(allowed)
        if unknown:
            parser.error(f"unknown {name}: {sorted(unknown)}")
    if args.repeat < 1 or min(args.concurrency) < 1:
        parser.error("--repeat and --concurrency must be >= 1")
    return args


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM becomes SystemExit, so the `finally` blocks stop every server."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def bench_model(
    args: argparse.Namespace,
    hey: str,
    procs: Processes,
    case: ModelCase,
    workdir: Path,
    mlserver: MLServerEnv | None,
) -> dict[str, Any]:
    targets: dict[str, Target] = {}
    skipped: dict[str, str] = {}
    overrides = dict(args.mlserver_setting)
    starters: dict[str, Callable[[], Target]] = {
        "a": lambda: start_bastion(procs, case, workdir),
        "b": lambda: start_bare(procs, case, workdir, use_sklearn=False),
        "b'": lambda: start_bare(procs, case, workdir, use_sklearn=True),
    }
    if mlserver is not None:
        starters["c"] = lambda: start_mlserver(procs, mlserver, case, workdir, overrides)
    (workdir / f"bastion-{case.key}").mkdir()
    try:
        for system in SYSTEMS:
            if system not in args.systems:
                continue
            if system not in starters:
                skipped[system] = "MLServer venv unavailable"
                continue
            try:
                target = starters[system]()
            except NotImplementedError as exc:
                skipped[system] = str(exc)
                print(f"  note: {SYSTEM_TITLES[system]} skipped: {exc}")
                continue
            except BenchError as exc:
                skipped[system] = f"failed to start: {str(exc).splitlines()[0]}"
                print(f"  {SYSTEM_TITLES[system]} failed to start: {exc}")
                continue
            try:
                check_target(target, case.expected_label)
            except (BenchError, OSError, http.client.HTTPException, ValueError) as exc:
                target.stop()
                skipped[system] = f"check failed: {exc}"
                print(f"  {SYSTEM_TITLES[system]} {skipped[system]}")
                continue
            targets[system] = target
        cells = {s: {c: Cell() for c in args.concurrency} for s in targets}
        for rep in range(args.repeat):
            for c in args.concurrency:
                for system, target in targets.items():
                    if args.warmup > 0:
                        run_hey(hey, target, c, args.warmup)
                    run = run_hey(hey, target, c, args.duration)
                    cells[system][c].runs.append(run)
                    bad = f"  !! {run.failures} failed: {run.statuses} {run.errors}"
                    print(
                        f"  [{case.key} run {rep + 1}/{args.repeat}] {system:<2} c={c:<3}"
                        f" {run.ok_rps:9.1f} req/s  p50 {_fmt(run.p50_ms, '.2f')} ms"
                        f"  p99 {_fmt(run.p99_ms, '.2f')} ms{bad if run.failures else ''}",
                        flush=True,
                    )
    finally:
        for target in targets.values():
            target.stop()
    notes = {s: t.notes for s, t in targets.items()}
    ratios = model_report(case.key, cells, skipped, notes, args.concurrency, args.repeat)
    return {
        "skipped": skipped,
        "notes": notes,
        "cells": {
            s: {
                str(c): {
                    "median": {k: cell.median(k) for k in ("ok_rps", "p50_ms", "p99_ms")},
                    "failures": cell.failures,
                    "runs": [
                        {
                            "rps": r.rps,
                            "ok_rps": r.ok_rps,
                            "p50_ms": r.p50_ms,
                            "p99_ms": r.p99_ms,
                            "statuses": r.statuses,
                            "errors": r.errors,
                        }
                        for r in cell.runs
                    ],
                }
                for c, cell in by_c.items()
            }
            for s, by_c in cells.items()
        },
        "ratios": ratios,
    }


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["train"]:  # used inside the MLServer venv
        train_to(sys.argv[2], Path(sys.argv[3]))
        return 0
    args = parse_args(argv)
    hey = shutil.which("hey")
    if hey is None:
        print("hey (the load generator) is not installed: install it: apt-get install hey")
        return 2
    import sklearn

    machine, versions = machine_info(), project_versions()
    CACHE.mkdir(exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine,
        "versions": versions,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "repeat": args.repeat,
            "concurrency": args.concurrency,
            "mlserver_overrides": dict(args.mlserver_setting),
        },
        "models": {},
    }
    failed = False
    procs = Processes()
    with _terminate_on_sigterm(), tempfile.TemporaryDirectory(dir=CACHE, prefix="run-") as tmp:
        workdir = Path(tmp)
        try:
            mlserver: MLServerEnv | None = None
            if "c" in args.systems:
                try:
                    mlserver = ensure_mlserver_venv(sklearn.__version__, CACHE / "pip.log")
                except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
                    print(f"MLServer unavailable: {exc}")
                    failed = True
                else:
                    versions.update({f"mlserver venv {k}": v for k, v in mlserver.versions.items()})
                    versions["mlserver venv sklearn pinned"] = str(mlserver.pinned)
            print(
                f"machine: {machine['nproc']} CPUs ({machine['cpu']}), load average"
                f" {' '.join(f'{x:.2f}' for x in machine['loadavg_start'])} (shared: noisy)"
            )
            print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
            print(
                f"cells: {args.warmup:g} s warm-up + {args.duration:g} s measured,"
                f" x{args.repeat}, concurrency {args.concurrency}, hey on loopback"
            )
            for key in args.models:
                case = prepare_model(key, workdir)
                result = bench_model(args, hey, procs, case, workdir, mlserver)
                results["models"][key] = result
                failed |= any(
                    cell["failures"] for by_c in result["cells"].values() for cell in by_c.values()
                )
                failed |= any(s != "a" for s in result["skipped"])
        finally:
            procs.stop_all()
    machine["loadavg_end"] = os.getloadavg()
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in machine['loadavg_end'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"raw numbers: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
