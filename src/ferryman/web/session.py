"""Browser sessions of the web UI: a signed cookie, and the CSRF token that goes with it.

The cookie is ``<payload>.<signature>``: the payload (base64 JSON: a random session id, the
client id of the application that logged in, or "" when the server asks for no auth, and an
expiry) signed with HMAC-SHA256 under a key only this server's home holds. Nothing secret is in
the payload; the signature stops anyone from making one up. It is sent HttpOnly (no script can
read it), SameSite=Lax (no other site's form posts with it) and Secure when served over https.

Every POST carries a CSRF token: an HMAC of the session id under the same key, put in each form
by the page. A page of another site can neither read it nor compute it. A new session id is
drawn at login, so a session id planted before it is worth nothing after.

Logging out ends the session on the server too: its id goes into ``web-sessions-ended`` beside
the key (one ``<expiry> <id>`` line, kept until the cookie would have expired anyway), so a copy
of the cookie (a shared machine, a proxy's log) is refused afterwards, by every server of this
home and after restarts.

The key is 32 random bytes in ``$FERRYMAN_HOME/web-session.key`` (0600), made once by the first
server. Servers that share a store but not a home keep their own keys: a session of one is not
good on another.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ferryman.private import open_private, private_dirs, tighten

COOKIE = "ferryman_session"
FLASH_COOKIE = "ferryman_flash"
KEY_FILE = "web-session.key"
ENDED_FILE = "web-sessions-ended"
ENDED_PRUNE_BYTES = 64 * 1024  # past this, logging out rewrites the file without expired lines
LIFETIME_S = 12 * 3600
KEY_BYTES = 32


def load_key(home: Path) -> bytes:
    """The signing key kept in the home, made (0600, atomically) when there is none."""
    path = home / KEY_FILE
    private_dirs(home)
    if not path.exists():
        spare = home / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = open_private(spare, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another server made it first: use theirs
            os.link(spare, path)
        spare.unlink()
    tighten(path)
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise ValueError(f"{path} is damaged (shorter than {KEY_BYTES} bytes): delete it to make a new one")
    return key


@dataclass(frozen=True)
class Session:
    sid: str
    client_id: str  # the application logged in; "" when the server needs no login
    expires: int

    @property
    def logged_in(self) -> bool:
        return bool(self.client_id)


class EndedSessions:
    """The ids of sessions logged out before they expired, in a 0600 file of the home. Read
    again only when it changed (a stat per request), so another server's logouts count too.
    Writers and readers ``flock`` it; a logout past ``ENDED_PRUNE_BYTES`` drops expired lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._version: tuple[int, int] | None = None
        self._ended: frozenset[str] = frozenset()

    def end(self, session: Session, now: float | None = None) -> None:
        fd = open_private(self.path, os.O_RDWR | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{session.expires} {session.sid}\n".encode())
            if os.fstat(fd).st_size > ENDED_PRUNE_BYTES:
                current = now if now is not None else time.time()
                kept = [(e, sid) for e, sid in _lines(_read_all(fd)) if e >= current]
                os.ftruncate(fd, 0)
                os.write(fd, "".join(f"{e} {sid}\n" for e, sid in kept).encode())
        finally:
            os.close(fd)  # and the lock with it

    def __contains__(self, sid: str) -> bool:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return False
        if (info.st_mtime_ns, info.st_size) != self._version:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                seen = os.fstat(fd)
                text = _read_all(fd)
            finally:
                os.close(fd)
            self._ended = frozenset(sid for _, sid in _lines(text))
            self._version = (seen.st_mtime_ns, seen.st_size)
        return sid in self._ended


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _lines(text: str) -> list[tuple[int, str]]:
    found = []
    for line in text.splitlines():
        expires, _, sid = line.partition(" ")
        if expires.isdigit() and sid:
            found.append((int(expires), sid))
    return found


@dataclass(frozen=True)
class Signer:
    key: bytes
    ended: EndedSessions | None = None  # None: logging out only drops the cookie (unit tests)

    def _sign(self, purpose: str, text: str) -> str:
        digest = hmac.new(self.key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()
        return _b64(digest)

    def new_session(self, client_id: str = "", now: float | None = None) -> Session:
        expires = int((now if now is not None else time.time()) + LIFETIME_S)
        return Session(secrets.token_urlsafe(18), client_id, expires)

    def dump(self, session: Session) -> str:
        payload = _b64(json.dumps({"s": session.sid, "c": session.client_id, "e": session.expires}).encode())
        return f"{payload}.{self._sign('session', payload)}"

    def load(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, _, signature = cookie.partition(".")
        if not hmac.compare_digest(signature, self._sign("session", payload)):
            return None
        try:
            fields = json.loads(_unb64(payload))
            session = Session(str(fields["s"]), str(fields["c"]), int(fields["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires < (now if now is not None else time.time()):
            return None
        if self.ended is not None and session.sid in self.ended:
            return None
        return session

    def end(self, session: Session) -> None:
        """Log the session out: its cookie is refused from now on, wherever it is replayed."""
        if self.ended is not None:
            self.ended.end(session)

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf", session.sid)

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))

    def dump_flash(self, kind: str, text: str) -> str:
        payload = _b64(json.dumps([kind, text]).encode())
        return f"{payload}.{self._sign('flash', payload)}"

    def load_flash(self, cookie: str | None) -> tuple[str, str] | None:
        if not cookie or "." not in cookie:
            return None
        payload, _, signature = cookie.partition(".")
        if not hmac.compare_digest(signature, self._sign("flash", payload)):
            return None
        try:
            kind, text = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        return str(kind), str(text)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
