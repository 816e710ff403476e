"""`bastion demo` (what `make run` runs): a governed release on a real model, then the server.

The setup itself is `bastion.workflows.demo`; this module is the process around it:

* a lock (`BASTION_HOME/demo.lock`, `fcntl.flock` for the process's life), so a second demo on
  the same home says so instead of racing the first;
* the listening socket, bound *before* anything else happens, so a port in use is reported
  at once (and cannot be taken between a check and the bind);
* `Platform.initialise` (what `bastion init` does: a new home is created, an old one migrated),
  with a home it cannot open reported as such;
* the API server (uvicorn with `create_app`, the gateway, rollout controller and monitor)
  in a thread of this process, its log in `BASTION_HOME/demo-server.log`;
* the token file (`BASTION_HOME/demo-tokens.json`, 0600) and the summary (or `--json`);
* then serving in the foreground until Ctrl-C (or SIGTERM), or exiting (`--no-serve`).

Every expected failure is a `BastionError` with a message saying what to do; anything else is
logged with its traceback to the server log and reported in one paragraph.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from bastion.cli.common import JsonFlag, err, out
from bastion.core.errors import BastionError, ConfigError, Conflict, InvalidInput, Unavailable
from bastion.core.settings import Settings
from bastion.platform import Platform
from bastion.workflows import demo as flow

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("bastion.demo")

LOCK_FILE: Final = "demo.lock"
LOG_FILE: Final = "demo-server.log"
STARTUP_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 15.0


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    scenario: Annotated[
        str,
        typer.Option(
            help="basic: set up, deploy v1, canary v2, a little traffic. drift: also shift the "
            "canary's traffic and show the drift alert, the automatic rollback and the incident."
        ),
    ] = "basic",
    listen: Annotated[
        str | None,
        typer.Option(
            help="host:port to serve on (default BASTION_LISTEN, 127.0.0.1:8080); port 0 "
            "picks a free one."
        ),
    ] = None,
    no_serve: Annotated[
        bool,
        typer.Option(
            "--no-serve", help="Do everything, print the summary and exit instead of serving."
        ),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="NAME",
            help="Print the demo token of NAME (e.g. omar) from the token file and exit: "
            "export BASTION_TOKEN=$(bastion demo --token omar)",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set up a governed demo on a real model and serve it (what `make run` runs).

    Demo principals with separate roles, scikit-learn's breast-cancer data registered as
    confidential (PII scan, risk, retention, privacy budget), two signed, audited, validated and
    approved versions (one with differential privacy), a refused self-approval, v1 deployed
    with a canary of v2 and traffic through the gateway. Idempotent: a second run reuses what
    the first made and issues fresh tokens (written to BASTION_HOME/demo-tokens.json, 0600).
    """
    settings = Settings.from_env()
    home = settings.home
    token_path = home / flow.TOKEN_FILE
    if token is not None:
        print(flow.token_from_file(token_path, token, datetime.now(UTC)))
        return
    if scenario not in flow.SCENARIOS:
        raise InvalidInput(
            f"unknown scenario {scenario!r}: use {' or '.join(flow.SCENARIOS)}",
            code="demo.bad_scenario",
        )
    host, port = _parse_listen(listen or settings.listen)
    started = time.monotonic()
    _prepare_home(home)
    log_path = home / LOG_FILE
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_sigterm_interrupts())
            stack.enter_context(_lock(home))
            sock = stack.enter_context(_bound(host, port))
            _log_to(log_path, settings)
            platform = stack.enter_context(_open_home(settings))
            url = _url(host, sock.getsockname()[1])
            from bastion.api import create_app

            app = create_app(platform)
            server = _Server(app, sock, settings)
            stack.callback(server.stop)
            with _Reporter(err).single("Server: start the API, gateway and monitor"):
                server.start(url)
            reporter = _Reporter(err)
            workflow = flow.DemoWorkflow(platform)
            previous = flow.previous_token_ids(flow.read_token_file(token_path))
            result = workflow.setup(
                scenario=scenario, reporter=reporter, previous_token_ids=previous
            )
            flow.write_private_file(
                token_path,
                json.dumps(flow.token_file_document(result, url, platform.clock.now()), indent=2)
                + "\n",
            )
            setup_seconds = time.monotonic() - started
            mark = time.monotonic()
            workflow.traffic(result, url, reporter=reporter)
            traffic_seconds = time.monotonic() - mark
            drift_seconds = None
            if scenario == "drift":
                mark = time.monotonic()
                workflow.drift(result, url, reporter=reporter)
                drift_seconds = time.monotonic() - mark
            summary = {
                **result.to_json(),
                "home": str(home),
                "url": url,
                "urls": _urls(url),
                "token_file": str(token_path),
                "log_file": str(log_path),
                "dp_available": flow.privacy_extra_installed(),
                "serving": not no_serve,
                "timings": {
                    "setup_seconds": round(setup_seconds, 2),
                    "traffic_seconds": round(traffic_seconds, 2),
                    "drift_seconds": round(drift_seconds, 2) if drift_seconds else None,
                    "total_seconds": round(time.monotonic() - started, 2),
                },
            }
            if as_json:
                sys.stdout.write(json.dumps(summary, default=str) + "\n")
                sys.stdout.flush()
            else:
                _render(summary)
            if no_serve:
                return
            if not as_json:
                out.print(
                    f"\nServing [bold]{url}[/] until Ctrl-C (server log: {escape(str(log_path))})."
                )
            server.serve_forever()
        err.print("Stopped the demo server.")
    except KeyboardInterrupt:
        err.print("Interrupted; the demo server is stopped. Run it again to finish the setup.")
        sys.exit(130)
    except BastionError:
        raise
    except Exception as error:  # reported in one paragraph, the traceback in the log
        log.exception("bastion demo failed")
        raise BastionError(
            f"the demo failed unexpectedly ({type(error).__name__}: {error}). The traceback is "
            f"in {log_path}; if BASTION_HOME ({home}) is a leftover of an older version, move "
            "it away and run the demo again.",
            code="demo.failed",
        ) from None


# -- the process around the flow ---------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the demo as Ctrl-C does: cleanly, whatever it is doing."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidInput(
            f"--listen/BASTION_LISTEN must be host:port (e.g. 127.0.0.1:8080), not {text!r}",
            code="demo.bad_listen",
        )
    return host, int(port_text)


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - display only
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _unusable_home(home: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"BASTION_HOME {home} cannot be used: {problem}. If it is a leftover you do not need, "
        f"move it away (mv {home} {home}.broken) or point BASTION_HOME at a fresh directory, "
        "then run the demo again; if it holds data you need, check its master key "
        f"(BASTION_MASTER_KEY or {home / 'master.key'}) and its database.",
        code="demo.home_unusable",
    )


def _prepare_home(home: Path) -> None:
    from bastion.crypto.masterkey import ensure_private_dir

    try:
        ensure_private_dir(home)
        if not home.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(home))
    except OSError as error:
        raise _unusable_home(home, error.strerror or str(error)) from None


@contextlib.contextmanager
def _lock(home: Path) -> Iterator[None]:
    """Hold `home/demo.lock` for the life of this process (the kernel drops it on exit)."""
    path = home / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise _unusable_home(home, f"cannot open {path}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise Conflict(
                f"another `bastion demo` (process {holder}) is already running on "
                f"BASTION_HOME {home}. Use that one (its URLs are in its terminal, its tokens in "
                f"{home / flow.TOKEN_FILE}), or stop it with Ctrl-C in its terminal and run "
                "this again; for a second, separate demo, set BASTION_HOME to another "
                "directory and --listen to another port.",
                code="demo.already_running",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _bound(host: str, port: int) -> Iterator[socket.socket]:
    """The server's listening socket, bound now: a port in use is reported before setup."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            other = f"{host}:{port + 1 if port < 65535 else 8081}"
            raise Conflict(
                f"port {port} on {host} is already in use (another Bastion server, another "
                "demo, or another program). Stop whatever holds it, or run the demo on "
                f"another port: `bastion demo --listen {other}` (with make: "
                f"`BASTION_LISTEN={other} make run`).",
                code="demo.port_in_use",
            ) from None
        raise ConfigError(
            f"cannot listen on {host}:{port} ({error.strerror}); choose another address with "
            "--listen or BASTION_LISTEN, e.g. 127.0.0.1:8080",
            code="demo.bad_listen",
        ) from None
    try:
        yield sock
    finally:
        sock.close()


def _log_to(path: Path, settings: Settings) -> None:
    """Send every log record (the server's, the alerts', warnings) to `path`, not the
    terminal the summary is printed on; redacted like the server's logs."""
    from bastion.privacy.logfilter import install_log_redaction
    from bastion.privacy.pii import default_detector

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.close(fd)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    if settings.redact_logs:
        # Built now, not on the first record: building it logs, which would re-enter the
        # filter's lazy initialisation.
        install_log_redaction(default_detector(settings))


@contextlib.contextmanager
def _open_home(settings: Settings) -> Iterator[Platform]:
    """`Platform.initialise` (a new home is created, an old one migrated), or why not."""
    try:
        platform = Platform.initialise(settings)
    except BastionError as error:
        log.warning("cannot open %s: %r", settings.home, error)
        raise _unusable_home(settings.home, f"{error.message} [{error.code}]") from None
    except OSError as error:
        raise _unusable_home(settings.home, error.strerror or str(error)) from None
    except Exception as error:  # e.g. a database file that is not one: the driver's error
        log.exception("cannot open %s", settings.home)
        raise _unusable_home(settings.home, f"{type(error).__name__}: {error}") from None
    with platform:
        yield platform


class _Server:
    """uvicorn serving `app` on an already bound socket, in a thread of this process."""

    def __init__(self, app: Any, sock: socket.socket, settings: Settings) -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="info",
            access_log=settings.access_log,
            server_header=False,
        )
        self._server: uvicorn.Server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="bastion-demo-server", daemon=True)
        self._failure: BaseException | None = None

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as error:  # reported by start() / serve_forever()
            self._failure = error
            log.exception("the demo server stopped")

    def start(self, url: str) -> None:
        import httpx

        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if not self._thread.is_alive():
                raise Unavailable(
                    "the demo server stopped while starting; its log says why "
                    f"({LOG_FILE} in BASTION_HOME)",
                    code="demo.server_failed",
                )
            if self._server.started:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                        return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"the demo server did not become ready within {STARTUP_TIMEOUT:g} s",
                    code="demo.server_failed",
                )
            time.sleep(0.05)

    def serve_forever(self) -> None:
        """Until Ctrl-C or SIGTERM (either stops it cleanly), or the server dies."""

        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            return
        raise Unavailable(
            f"the demo server stopped unexpectedly ({self._failure!r}); see {LOG_FILE} in "
            "BASTION_HOME",
            code="demo.server_failed",
        )

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5.0)


def _urls(url: str) -> dict[str, str]:
    """Where to look; the web dashboards only when this build serves them."""
    import httpx

    urls = {
        "api_docs": f"{url}/docs",
        "openapi": f"{url}/openapi.json",
        "metrics": f"{url}/metrics",
    }
    with contextlib.suppress(httpx.HTTPError):
        if httpx.get(f"{url}/ui/", timeout=5.0).status_code == 200:
            urls["dashboards"] = f"{url}/ui/"
    return urls


# -- progress and the summary -----------------------------------------------------------------


class _Reporter:
    """`flow.Reporter` on a console: a transient progress line while a step runs (on a
    terminal), one ✓ line with its outcome and time when it ends."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._title = ""
        self._started = 0.0

    def begin(self, title: str, total: int | None = None) -> None:
        self._title, self._started = title, time.monotonic()
        if self._console.is_terminal:
            counted = (BarColumn(), MofNCompleteColumn()) if total is not None else ()
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                *counted,
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(escape(title), total=total)

    def advance(self, amount: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)

    def end(self, outcome: str, *, ok: bool = True) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        seconds = time.monotonic() - self._started
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        self._console.print(
            f"{mark} {escape(self._title)}: {escape(outcome)} [dim]({seconds:.1f} s)[/]",
            highlight=False,
        )

    @contextlib.contextmanager
    def single(self, title: str) -> Iterator[None]:
        self.begin(title)
        try:
            yield
        except BaseException:
            self.end("failed", ok=False)
            raise
        self.end("ready")


def _cli() -> str:
    """How the user invoked bastion (`.venv/bin/bastion` under make), for the hints."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "bastion"
    return shlex.quote(argv0) if Path(argv0).name == "bastion" else "bastion"


def _render(s: dict[str, Any]) -> None:
    """The human summary: what happened, where to look, what to try."""
    p = out.print
    t = s["timings"]
    took = f"setup {t['setup_seconds']:.1f} s, traffic {t['traffic_seconds']:.1f} s"
    if t.get("drift_seconds"):
        took += f", drift {t['drift_seconds']:.1f} s"
    p()
    p(f"[bold]Bastion demo[/] ({s['scenario']}) — done in {t['total_seconds']:.1f} s ({took})")
    p("[dim]Every step went through the real services and policy gates, as the people below.[/]")
    expiry = s["principals"][0]["token_expires_at"][:16].replace("T", " ")
    p()
    p(f"[bold]People[/]    tokens in {escape(s['token_file'])} (mode 0600; expire {expiry} UTC)")
    for person in s["principals"]:
        new = " [dim](new)[/]" if person["created"] else ""
        scope = f" — {', '.join(person['resources'])}" if person["resources"] else ""
        p(
            f"  {person['name']:<11} {', '.join(person['roles']):<28} "
            f"{escape(person.get('description', ''))}{scope}{new}",
            highlight=False,
        )
    d = s["dataset"]
    p()
    p(
        f"[bold]Data[/]      {d['ref']}: {d['classification']}, purpose {d['purposes'][0]}, "
        f"kept {d['retention_days']} days; {d['rows']} rows, {d['columns']} columns "
        f"(scikit-learn's breast-cancer set)",
        highlight=False,
    )
    risk = d["risk"]
    unique = risk.get("unique_share")
    p(
        f"          PII scan: {d['pii']['summary']}; k-anonymity over "
        f"{', '.join(risk['quasi_identifiers'])}: k={risk['k']}"
        + (f" ({unique:.0%} of rows unique)" if isinstance(unique, float) else ""),
        highlight=False,
    )
    if s["dp"].get("available"):
        b = s["dp"]["budget"]
        p(
            f"          privacy budget: ε {b['epsilon_spent']:g} of {b['epsilon_total']:g} spent",
            highlight=False,
        )
    p()
    p(f"[bold]Models[/]    {s['model']['name']} (purpose {s['model']['purpose']})")
    for v in s["versions"]:
        kind = {
            "baseline": "logistic regression",
            "plain": "logistic regression (second plain model)",
            "dp": f"DP logistic regression (ε={(v.get('dp') or {}).get('epsilon', '?')})",
        }.get(v["kind"], v["kind"])
        acc = v["metrics"].get("accuracy")
        extra = (
            f", AUC {v['metrics']['roc_auc']:.3f}"
            if "roc_auc" in v["metrics"]
            else (
                f" (non-private {v['metrics']['baseline_accuracy']:.3f})"
                if "baseline_accuracy" in v["metrics"]
                else ""
            )
        )
        audit = v["privacy_audit"]
        approvers = " + ".join(a["approver"] for a in v["approvals"]) or "nobody"
        ok = "[green]✓[/]"
        p(f"  v{v['number']:<8} {kind}{'' if v['created'] else ' [dim](reused)[/]'}")
        p(
            f"            holdout accuracy {acc:.3f}{extra} · signed "
            f"{ok if v['signature']['verified'] else '[red]✗[/]'} · validation "
            f"{ok if v['validation']['passed'] else '[red]✗[/]'} · membership-inference AUC ≤ "
            f"{audit['auc_upper']:.3f} {ok if audit['passed'] else '[red]✗[/]'} · approved by "
            f"{approvers}",
            highlight=False,
        )
    for rejected in s["dp"].get("rejected", []):
        p(
            f"  [dim]{rejected['ref']}: a DP run deprecated ({'; '.join(rejected['reasons'])})[/]",
            highlight=False,
        )
    if not s["dp"].get("available"):
        p(f"  [yellow]{escape(s['dp']['note'])}[/]")
    for refusal in s["refusals"]:
        p()
        p(f"[bold]Refused[/]   {escape(refusal['what'])}")
        for reason in refusal["reasons"]:
            p(f"          {refusal['gate']} gate: {escape(reason)}", highlight=False)
        p(f"          [dim]decision {refusal['decision_id']} (bastion policy decisions)[/]")
    e = s["endpoint"]
    p()
    canary = f", v{e['canary']} canary at {e['canary_weight']:g} %" if e.get("canary") else ""
    p(f"[bold]Serving[/]   endpoint {e['name']}: v{e['stable']} stable{canary}", highlight=False)
    tr = s["traffic"]
    split = ", ".join(f"v{k}: {n}" for k, n in sorted(tr["by_version"].items()))
    statuses = ", ".join(f"HTTP {k}: {n}" for k, n in sorted(tr["statuses"].items()))
    p(
        f"[bold]Traffic[/]   {tr['requests']} predictions as {tr['client']} ({statuses}; "
        f"{split}); the gateway's monitor counted {tr['counted_by_monitor']}",
        highlight=False,
    )
    drift = s.get("drift")
    if drift:
        p()
        if drift.get("skipped"):
            p(f"[bold]Drift[/]     skipped: {drift['skipped']}")
        else:
            p(
                f"[bold]Drift[/]     {drift['requests']} requests ({drift['rows']} rows): "
                f"{escape(drift['shift'])}",
                highlight=False,
            )
            rollback = drift.get("rollback")
            if rollback:
                p(
                    f"          canary v{drift['canary_version']} rolled back by "
                    f"{rollback['actor']} "
                    f"{drift.get('seconds_to_rollback')} s after the shift began — "
                    f"{escape(str(rollback['reason']))}",
                    highlight=False,
                )
            else:
                p("          [red]the canary was not rolled back in time[/]")
            for alert in drift["alerts"]:
                version = f", v{alert['version']}" if alert.get("version") else ""
                p(
                    f"          alert {alert['name']} ({alert['severity']}{version}): "
                    f"{escape(str(alert['summary']))}",
                    highlight=False,
                )
            if drift.get("requests_after_rollback"):
                p(
                    "          [dim]the same users' shifted traffic then reached the stable "
                    "version: a ticket, not a rollback (there is nothing to roll back to)[/]"
                )
            if drift.get("incident"):
                p(
                    f"          incident snapshot {drift['incident']['id']} "
                    f"(trigger {drift['incident']['trigger']}, signed): "
                    f"{_cli()} incident report {drift['incident']['id']}",
                    highlight=False,
                )
    cli = _cli()
    u = s["urls"]
    p()
    if not s["serving"]:
        p(
            f"[dim]--no-serve: the server has stopped; `{cli} server` (or `make run`) serves "
            "these again[/]",
            highlight=False,
        )
    p(f"[bold]Open[/]      API docs    {u['api_docs']}")
    if "dashboards" in u:
        p(f"          dashboards  {u['dashboards']}  (paste a token from the token file)")
    p(f"          metrics     {u['metrics']}  (needs a token: omar's, for instance)")
    p()
    p(f"[bold]Try[/]       export BASTION_TOKEN=$({cli} demo --token omar)", highlight=False)
    p(f"          {cli} endpoint history {e['name']}", highlight=False)
    if e.get("canary"):
        p(f"          {cli} rollout promote {e['name']}", highlight=False)
    p(f"          {cli} incident snapshot {e['name']} --note 'first look'", highlight=False)
    example = tr.get("example_receipt") or {}
    if example.get("request_id"):
        p(
            f'          curl -H "Authorization: Bearer $({cli} demo --token clinic-app)" '
            f"{s['url']}/v1/receipts/{example['request_id']}",
            highlight=False,
        )
    if s["scenario"] != "drift":
        p(f"          {cli} demo --scenario drift   # shift the traffic: drift alert, rollback")
