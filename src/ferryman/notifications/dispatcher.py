"""The dispatcher: claims due events from the store's outbox, posts them, records each try.

    dispatcher = Dispatcher(store, base_url="https://ferryman.example.com")
    dispatcher.tick()                  # one pass: claim what is due, post it, record the outcomes
    dispatcher.run(stop_event)         # `ferryman server`: tick until stopped

Any number of dispatchers may share a store: a claim belongs to one of them (see
:mod:`ferryman.store.notify_ops`), so each event is posted once. A delivery never touches a job:
the job ended, and its event was written, before anyone posts anything. A receiver that is down
delays only its own events: each of them waits out its backoff, and a pass posts its events in
parallel, each bounded by the timeout.

What is sent is masked here once more with the job's and the connection's secret values, on top
of the masking the engines did before storing failure messages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import orjson

from ferryman import masking
from ferryman.clock import Clock, SystemClock
from ferryman.jobs.retry import env_number
from ferryman.notifications.payloads import render, shown_url
from ferryman.secrets import longest_first, mask_strings, mask_text
from ferryman.store.base import Actor, JobStore, NotFound, NotificationEvent, Webhook
from ferryman.store.notify_ops import DELIVERED, FAILED, PENDING

log = logging.getLogger("ferryman.notifications")
PUBLIC_URL_ENV = "FERRYMAN_PUBLIC_URL"
# A status that may be worth another try; other 4xx answers (a revoked Slack hook's 404, a 400)
# will not change by waiting.
_RETRY_STATUSES = frozenset({408, 425, 429})
Post = Callable[[str, bytes], int]  # (url, JSON body) -> HTTP status; raises on a network error


@dataclass(frozen=True)
class DeliveryPolicy:
    """Tries and timing: ``backoff_s x 2^(n-1)`` after the n-th failed try, ``max_tries`` in all
    (30 s, 1, 2, 4 and 8 min: the last try about 15 min after the first)."""

    max_tries: int = 6
    backoff_s: float = 30.0
    timeout_s: float = 10.0
    batch: int = 20  # events claimed per pass, posted 8 at a time
    poll_s: float = 2.0

    @property
    def lease_s(self) -> float:
        """How long a claim holds: a try that takes longer (it cannot: the timeout) could be
        claimed again by another dispatcher."""
        return self.timeout_s * 3 + 30

    def retry_in_s(self, tries: int) -> float:
        """How long after the ``tries``-th failed try the next one is due."""
        return float(self.backoff_s * 2 ** max(0, tries - 1))

    @classmethod
    def from_env(cls) -> DeliveryPolicy:
        def number(name: str, default: float, minimum: float) -> float:
            return env_number(os.environ, name, default, minimum)

        return cls(
            max_tries=int(number("FERRYMAN_NOTIFY_MAX_TRIES", cls.max_tries, 1)),
            backoff_s=number("FERRYMAN_NOTIFY_BACKOFF_S", cls.backoff_s, 0),
            timeout_s=number("FERRYMAN_NOTIFY_TIMEOUT_S", cls.timeout_s, 0.1),
            poll_s=number("FERRYMAN_NOTIFY_POLL_S", cls.poll_s, 0.05),
        )


@dataclass(frozen=True)
class Delivery:
    """One try of one event: what happened, for logs and tests."""

    event_id: int
    webhook: str  # scheme and host only
    status: str  # delivered | pending (will retry) | failed (no more tries)
    status_code: int | None
    error: str | None
    tries: int


class Redirected(Exception):
    """A receiver answered a redirect, which is not followed: the body (a failure, a connection's
    name) would go to a host nobody configured, and a webhook that moved is for its owner to
    update. The message names the target by scheme and host only (it may hold a token)."""

    def __init__(self, status_code: int, target: str | None) -> None:
        where = f" to {shown_url(target)}" if target else ""
        super().__init__(
            f"HTTP {status_code}: redirected{where}, which is not followed; set the webhook's new URL"
        )
        self.status_code = status_code


def http_post(timeout_s: float) -> Post:
    """A poster whose every try ends within ``timeout_s``, answered or not; redirects are not
    followed (:class:`Redirected`), and the answer's body is not read (its status is all we keep).

    httpx's timeouts bound each read, not the request: a receiver that trickles its answer a byte
    at a time would hold a try, and with it the pass and every other event, for as long as it
    liked. So each try runs on an event loop of its own, cancelled at its deadline."""
    import asyncio

    import httpx

    from ferryman import __version__

    headers = {"content-type": "application/json", "user-agent": f"ferryman/{__version__}"}
    verify = httpx.create_ssl_context()  # once: loading the CA bundle takes ~20 ms

    async def post_once(url: str, body: bytes) -> int:
        async with (
            httpx.AsyncClient(timeout=timeout_s, verify=verify, headers=headers) as client,
            client.stream("POST", url, content=body) as response,
        ):
            if response.is_redirect:  # 301, 302, 303, 307, 308
                raise Redirected(response.status_code, _target(url, response.headers.get("location")))
            return response.status_code

    def post(url: str, body: bytes) -> int:
        try:
            return asyncio.run(asyncio.wait_for(post_once(url, body), timeout_s))
        except TimeoutError:  # asyncio's has no message; httpx's own timeouts have theirs
            raise TimeoutError(f"no answer within {timeout_s:g} s") from None
        except httpx.ConnectError as exc:  # anyio says "All connection attempts failed": say why
            raise httpx.ConnectError(_connect_failure(exc)) from exc

    return post


def _target(url: str, location: str | None) -> str | None:
    """Where a redirect points, made absolute; None when it says nowhere readable."""
    try:
        return urljoin(url, location) if location else None
    except ValueError:  # "http://[::1" and the like
        return None


def _connect_failure(exc: BaseException) -> str:
    """The socket's own reason (``[Errno 111] Connection refused``) from under a connect error."""
    cause: BaseException | None = exc
    while cause is not None:
        errno = getattr(cause, "errno", None)
        if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError) and (errno or 0) > 0:
            return f"[Errno {errno}] {os.strerror(errno or 0)}"
        cause = cause.__cause__ or cause.__context__
    return str(exc)


def public_url(default: str) -> str:
    return (os.environ.get(PUBLIC_URL_ENV) or default).rstrip("/")


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        base_url: str = "http://127.0.0.1:8000",
        policy: DeliveryPolicy | None = None,
        clock: Clock | None = None,
        post: Post | None = None,
    ) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.policy = policy or DeliveryPolicy()
        self.clock = clock or SystemClock()
        self._post = post or http_post(self.policy.timeout_s)
        self.dispatcher_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._pool = ThreadPoolExecutor(max_workers=min(8, self.policy.batch), thread_name_prefix="notify")

    # -- one pass ----------------------------------------------------------------------------

    def tick(self) -> list[Delivery]:
        """Claim the due events, post them in parallel, record each outcome; what happened.
        What is due, and when a failed try is tried again, the store's clock decides."""
        claimed = self.store.claim_events(self.dispatcher_id, self.policy.lease_s, self.policy.batch)
        # Only the posts run in parallel (a slow receiver holds one thread, not the pass); the
        # payloads are built, and the outcomes written, here, one after the other: SQLite takes one
        # writer at a time, and threads queueing on the store only slowed every post down.
        actors = self._actors() if claimed else []
        bodies = [self._body(event, hook, actors) for event, hook in claimed]
        futures = [
            self._pool.submit(self._post_body, hook, body)
            for (_, hook), body in zip(claimed, bodies, strict=True)
        ]
        return [
            self._record(event, hook, *future.result())
            for (event, hook), future in zip(claimed, futures, strict=True)
        ]

    def _body(self, event: NotificationEvent, hook: Webhook, actors: list[Actor]) -> bytes | Exception:
        try:
            return orjson.dumps(self.payload(event, hook, actors))
        except Exception as exc:  # a detail that cannot be read: the try fails, with its reason
            return exc

    def _post_body(self, hook: Webhook, body: bytes | Exception) -> tuple[int | None, str | None]:
        """Post one body: its HTTP status, or the error that kept it from getting one."""
        try:
            if isinstance(body, Exception):
                raise body
            return self._post(hook.url, body), None
        except Redirected as exc:  # an answer, but not one to wait for: given up at once
            return exc.status_code, str(exc)
        except Exception as exc:  # a network error: one line
            return None, _error_line(exc, hook.url, shown_url(hook.url))

    def _record(
        self,
        event: NotificationEvent,
        hook: Webhook,
        status_code: int | None,
        error: str | None,
    ) -> Delivery:
        tries = event.tries + 1
        delivered = status_code is not None and 200 <= status_code < 300
        if delivered:
            status, retry_in_s = DELIVERED, None
        elif tries >= self.policy.max_tries or not _worth_retrying(status_code):
            status, retry_in_s = FAILED, None
        else:
            status, retry_in_s = PENDING, self.policy.retry_in_s(tries)
        if error is None and not delivered:
            error = f"HTTP {status_code}"
        kept = self.store.end_event_try(
            event.id, self.dispatcher_id, self.clock.now(), status, retry_in_s, status_code, error
        )
        result = Delivery(event.id, shown_url(hook.url), status, status_code, error, tries)
        _log(result, event, kept, retry_in_s)
        return result

    # -- what is sent ------------------------------------------------------------------------

    def payload(
        self, event: NotificationEvent, hook: Webhook, actors: list[Actor] | None = None
    ) -> dict[str, Any]:
        """The event's body for ``hook``, every string masked with the secrets it could carry
        (those of the job's configs, and of the connection's source and destination among
        ``actors``; default: the store's)."""
        if actors is None:
            actors = self._actors()
        hidden = self._secrets(event, actors)
        detail = mask_strings(event.detail, hidden)
        document = render(event.kind, detail, hook.format, self.base_url, event.id)
        masked: dict[str, Any] = mask_strings(document, hidden)
        return masked

    def _actors(self) -> list[Actor]:
        return self.store.list_actors("source") + self.store.list_actors("destination")

    def _secrets(self, event: NotificationEvent, actors: list[Actor]) -> list[str]:
        found: list[str] = []
        if event.job_id is not None:
            with contextlib.suppress(NotFound):  # a job deleted since: its detail was masked when stored
                found += masking.job_secrets(self.store.get_job(event.job_id, catalog=False), actors)
        if event.connection_id is not None:
            with contextlib.suppress(NotFound):
                # Its ends only: its catalog (megabytes at thousands of streams) holds no secret.
                connection = self.store.get_connection_by_id(event.connection_id, catalog=False)
                ends = {connection.source_id, connection.destination_id}
                found += masking.actor_secrets(*(a for a in actors if a.id in ends))
        return longest_first(found)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick every ``poll_s`` until ``stop`` is set, then once more: a server that stops lets
        its running jobs end first, and their events go out now, not at its next start. A store
        that fails a pass is tried again at the next one; the loop itself never ends on an error."""
        while not stop.is_set():
            busy = self._pass() >= self.policy.batch
            if not busy:
                stop.wait(self.policy.poll_s)
        self._pass()
        self.close()

    def _pass(self) -> int:
        try:
            return len(self.tick())
        except Exception as exc:
            log.warning("notifications: pass failed, trying again: %s", _first(str(exc)))
            return 0

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="notifications", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _worth_retrying(status_code: int | None) -> bool:
    return status_code is None or status_code >= 500 or status_code in _RETRY_STATUSES


def _first(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


def _error_line(exc: Exception, url: str, shown: str) -> str:
    """The error, one line, without the webhook's URL (its path may hold a token)."""
    text = _first(str(exc)) or type(exc).__name__
    text = text.replace(url, shown)
    path = url.split("://", 1)[-1].partition("/")[2]
    return mask_text(text, [path]) if len(path) >= 6 else text


def _log(result: Delivery, event: NotificationEvent, kept: bool, retry_in_s: float | None) -> None:
    what = f"{event.kind} event {event.id}" + (f" of job {event.job_id}" if event.job_id else "")
    code = f" HTTP {result.status_code}" if result.status_code is not None else ""
    if not kept:
        log.warning(
            "notification %s to %s: claim lost to another dispatcher, outcome not kept", what, result.webhook
        )
    elif result.status == DELIVERED:
        log.info("notification %s delivered to %s:%s (try %d)", what, result.webhook, code, result.tries)
    elif result.status == PENDING:
        log.warning(
            "notification %s to %s failed (try %d): %s; next try in %.0fs",
            what, result.webhook, result.tries, result.error, retry_in_s or 0,
        )  # fmt: skip
    else:
        log.warning(
            "notification %s to %s failed for good (try %d): %s",
            what,
            result.webhook,
            result.tries,
            result.error,
        )
