"""``ferryman server``: the HTTP API, the scheduler (unless ``--no-scheduler``) and, unless
``--no-engine``, the local engine in one process.

SIGTERM or Ctrl-C: the server stops accepting requests and finishes those in flight; the
scheduler finishes its pass; the engine then stops claiming jobs and lets its running attempts
finish (as ``ferryman worker`` does). A second signal cancels those attempts.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ferryman.errors import StoreUnavailable, UserInputError
from ferryman.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from ferryman.service import JobService
    from ferryman.store import SqlJobStore

JOIN_POLL_S = 0.2
# What else the server's app serves, added by the layer above (ferryman.entry: the web UI), so
# that the API never imports another surface. Each is called with the app, the job service and
# whether requests need credentials.
APP_EXTENSIONS: list[Callable[[FastAPI, JobService, bool], None]] = []


class MetricsAuth(StrEnum):
    """Who may read /metrics (see api/metrics.py)."""

    API = "api"  # the same as every other route
    LOOPBACK = "loopback"  # no credentials from a loopback client address; the API's from others


class AuthMode(StrEnum):
    AUTO = "auto"  # token when an application exists at start-up, else none
    NONE = "none"
    TOKEN = "token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_required(mode: AuthMode, host: str, applications: int) -> bool:
    """Whether requests need credentials. ``auto``: when an application exists. Without auth
    only a loopback address is served: anyone who reaches the port could read every config."""
    required = mode is AuthMode.TOKEN or (mode is AuthMode.AUTO and applications > 0)
    if not required and not is_loopback(host):
        raise UserInputError(
            f"refusing to serve {host} without auth: anyone who reaches it could run jobs and read "
            "configs; create an application (ferryman applications create NAME) and use --auth token, "
            "or listen on 127.0.0.1"
        )
    return required


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_engine: Annotated[
        bool,
        typer.Option("--no-engine", help="Serve the API only; `ferryman worker` processes run the jobs."),
    ] = False,
    auth: Annotated[
        AuthMode, typer.Option(help="auto: tokens/basic auth once an application exists, else none.")
    ] = AuthMode.AUTO,
    engine_name: Annotated[
        str | None,
        typer.Option(
            "--engine", help="local or temporal; default: FERRYMAN_ENGINE, else local.", show_default=False
        ),
    ] = None,
    no_notifications: Annotated[
        bool,
        typer.Option("--no-notifications", help="Do not post notification webhooks from this process."),
    ] = False,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="Where clients reach this server, for job links in notifications; default: "
            "FERRYMAN_PUBLIC_URL, else http://HOST:PORT.",
            show_default=False,
        ),
    ] = None,
    metrics_auth: Annotated[
        MetricsAuth,
        typer.Option(
            help="/metrics: api = the API's auth; loopback = none from a client on a loopback address."
        ),
    ] = MetricsAuth.API,
    no_scheduler: Annotated[
        bool,
        typer.Option(
            "--no-scheduler", help="Do not run scheduled connections here (a `ferryman scheduler` does)."
        ),
    ] = False,
) -> None:
    """Serve Airbyte's API (/v1, /api/public/v1), run scheduled connections and queued jobs,
    until SIGTERM or Ctrl-C."""
    try:
        notify = None if no_notifications else (public_url or "")
        code = _serve(host, port, not no_engine, auth, engine_name, notify, metrics_auth, not no_scheduler)
    except (UserInputError, ValueError, StoreUnavailable) as exc:  # a store it cannot use: one line
        sys.stderr.write(f"error: {str(exc).strip().splitlines()[0]}\n")
        code = 2
    raise typer.Exit(code)


def _open_store(settings: Settings) -> SqlJobStore:
    """The store, once it answers (store/waiting.py); SIGTERM or Ctrl-C meanwhile stop the wait,
    in the middle of a connect too."""
    from ferryman.store.waiting import Stopped, StopSignals, open_store_waiting, wait_bound_s

    bound_s = wait_bound_s()
    try:
        with StopSignals() as signals:
            say = lambda line, *_: _say(line)  # noqa: E731
            return open_store_waiting(settings.home, say, signals, bound_s, trying=signals.armed)
    except Stopped:
        sys.stderr.write("error: interrupted while waiting for the store\n")
        raise typer.Exit(130) from None


def _serve(
    host: str,
    port: int,
    with_engine: bool,
    mode: AuthMode,
    engine_name: str | None,
    notify: str | None,
    metrics: MetricsAuth,
    with_scheduler: bool,
) -> int:
    """``notify``: None for no notifications, else the public URL ("" for the default)."""
    # Imported here: every other ferryman command starts without FastAPI and the store.
    import uvicorn

    from ferryman.api.app import create_app
    from ferryman.api.context import ApiContext
    from ferryman.api.metrics import MetricsOptions
    from ferryman.engines.choose import command_engine, is_temporal, worker_engine
    from ferryman.service import JobService

    settings = Settings.from_env()
    with _open_store(settings) as store:
        required = auth_required(mode, host, len(store.list_applications()))
        temporal = is_temporal(engine_name)
        engine = worker_engine(store, settings, engine_name) if with_engine else None
        # Without a worker in this process, Temporal still needs its jobs submitted from here.
        submitter = command_engine(store, settings, engine_name) if temporal and engine is None else None
        service = JobService(store, settings, engine or submitter)
        options = MetricsOptions(metrics, engine.limits if engine is not None else {})
        app = create_app(ApiContext(service), required, options)
        for extend in APP_EXTENSIONS:
            extend(app, service, required)
        if not required:
            from ferryman.api.hosts import LoopbackHostsOnly

            app.add_middleware(LoopbackHostsOnly, port=port)
        config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning")
        web = uvicorn.Server(config)
        # Streams that last as long as a job (the web UI's live log) end when this turns true:
        # a stop "finishes the requests in flight", and a job may stay pending for ever.
        app.state.stopping = lambda: web.should_exit
        where = f"http://{host}:{port}"
        _say(f"ferryman server listening on {where} (public API {where}/v1 and {where}/api/public/v1)")
        if APP_EXTENSIONS:
            _say(f"web UI {where}/")
        _say(f"store {store.url}; auth {'token or basic' if required else 'none'}")
        if required and metrics is MetricsAuth.LOOPBACK:
            _say(f"metrics {where}/metrics: no auth from loopback clients, token or basic from others")
        stop_scheduler = _start_scheduler(service) if with_scheduler else _nothing
        if not with_scheduler:
            _say("scheduler: none (--no-scheduler): a `ferryman scheduler` runs scheduled connections")
        from ferryman.notifications.running import dispatching

        with dispatching(store, notify, _say, where):
            return _run(web, engine, temporal, stop_scheduler)


def _run(web: uvicorn.Server, engine: Any, temporal: bool, stop_scheduler: Callable[[], None]) -> int:
    """Serve until stopped, with the engine (a LocalEngine) on a thread when there is one."""
    if engine is None:
        _say("engine: none (--no-engine): `ferryman worker` processes run the jobs")
        if temporal:
            _say("jobs are submitted to Temporal; `ferryman worker --engine temporal` processes run them")
        for number in (signal.SIGTERM, signal.SIGINT):  # see _with_engine: uvicorn raises it again
            signal.signal(number, signal.SIG_IGN)
        web.run()
        stop_scheduler()
        _say("ferryman server stopped")
        return 0
    limits = ", ".join(f"{slot} {limit}" for slot, limit in engine.limits.items())
    kind = "temporal" if temporal else "local"
    _say(f"engine {engine.engine_id}: {kind}, at most {limits} at once")
    return _with_engine(web, engine, stop_scheduler)


def _nothing() -> None:
    pass


def _start_scheduler(service: Any) -> Callable[[], None]:  # service: a JobService
    """Run the scheduler on a thread; returns what stops it (after the pass in progress)."""
    from ferryman.scheduler import LineObserver, Scheduler

    runner = Scheduler(service, observer=LineObserver(lambda line: _say(f"scheduler: {line}")))
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), name="scheduler", daemon=True)
    thread.start()
    _say(
        f"scheduler: a pass every {runner.settings.interval_s:g}s "
        "(--no-scheduler to leave it to another process)"
    )

    def stopper() -> None:
        stop.set()
        thread.join()

    return stopper


def _with_engine(
    web: uvicorn.Server, engine: Any, stop_scheduler: Callable[[], None]
) -> int:  # a LocalEngine
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), name="engine", daemon=True)
    thread.start()
    signals = {"count": 0}

    def on_signal(_signum: int, _frame: object) -> None:
        signals["count"] += 1

    # uvicorn restores the handlers it found and then raises the signal that stopped it again:
    # ours must be the ones it finds, or that SIGTERM kills the process before the drain.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, on_signal)
    web.run()  # returns after SIGTERM/SIGINT, requests in flight done
    # uvicorn raises again every signal it caught: the first stopped it, and any after that
    # (a Ctrl-C pressed twice before the web part was down) is a second one, which cancels.
    signals["count"] = max(0, signals["count"] - 1)
    stop_scheduler()
    stop.set()
    running = len(engine.running_attempt_ids())
    _say(f"stopping: no new jobs; waiting for {running} running attempt(s) (signal again to cancel them)")
    cancelled = False
    while thread.is_alive():
        thread.join(JOIN_POLL_S)
        if signals["count"] and not cancelled:
            _say("cancelling the running attempts")
            engine.cancel_all()
            cancelled = True
    _say("ferryman server stopped")
    return 0


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
