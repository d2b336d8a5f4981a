"""Applications (API clients) and their credentials: the client-credentials flow of Airbyte's API.

A secret is shown once, at creation, and kept only as a salted PBKDF2-SHA256 hash. A bearer
token is ``<client id>.<expiry>.<signature>``: an HMAC over the id and expiry, keyed by the
application's stored hash. Any server on the same store can check it without keeping tokens,
and deleting the application revokes its tokens at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from ferryman.store.base import Application, JobStore

TOKEN_LIFETIME_S = 900  # Airbyte Cloud's last 3 min; dagster renews every 150 s whatever it is told
_ITERATIONS = 120_000
_SCHEME = "pbkdf2_sha256"


def hash_secret(secret: str, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return f"{_SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def secret_matches(secret: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        again = hashlib.pbkdf2_hmac("sha256", secret.encode(), _unb64(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(again, _unb64(digest))


def create_application(store: JobStore, name: str) -> tuple[Application, str]:
    """A new application and its secret (shown to the user once, never stored)."""
    secret = secrets.token_urlsafe(32)
    return store.create_application(name, hash_secret(secret)), secret


@dataclass
class Verifier:
    """Checks client credentials and tokens against the store. A secret checked once is
    remembered for a while (as a fast digest, in memory) so that basic auth does not pay
    PBKDF2 on every request."""

    store: JobStore
    remember_s: float = 300.0

    def __post_init__(self) -> None:
        self._seen: dict[tuple[str, bytes], float] = {}
        self._lock = threading.Lock()

    def check_secret(self, client_id: str, secret: str) -> Application | None:
        app = self.store.get_application(client_id)
        if app is None:
            return None
        key = (app.client_id + app.secret_hash, hashlib.sha256(secret.encode()).digest())
        now = time.monotonic()
        with self._lock:
            if self._seen.get(key, 0.0) > now:
                return app
        if not secret_matches(secret, app.secret_hash):
            return None
        with self._lock:
            self._seen[key] = now + self.remember_s
        return app

    def issue_token(self, app: Application, now: float | None = None) -> tuple[str, int]:
        expires = int((now or time.time()) + TOKEN_LIFETIME_S)
        return f"{app.client_id}.{expires}.{_sign(app, expires)}", TOKEN_LIFETIME_S

    def check_token(self, token: str, now: float | None = None) -> Application | None:
        try:
            client_id, expires_text, signature = token.split(".")
            expires = int(expires_text)
        except ValueError:
            return None
        if expires < (now or time.time()):
            return None
        app = self.store.get_application(client_id)
        if app is None or not hmac.compare_digest(signature, _sign(app, expires)):
            return None
        return app


def _sign(app: Application, expires: int) -> str:
    key = hashlib.sha256(b"ferryman-token:" + app.secret_hash.encode()).digest()
    return _b64(hmac.new(key, f"{app.client_id}.{expires}".encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
