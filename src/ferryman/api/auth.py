"""Who may call the API: bearer tokens from ``/applications/token``, HTTP basic auth with an
application's client id and secret, or nobody checked at all (``--auth none``, loopback only)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fastapi import Request

from ferryman.api.problems import Problem
from ferryman.credentials import Verifier


@dataclass(eq=False)  # hashed: FastAPI caches dependencies by callable
class Guard:
    verifier: Verifier
    required: bool

    def __call__(self, request: Request) -> None:
        if not self.required:
            return
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.verifier.check_token(value) is not None:
            return
        if scheme.lower() == "basic" and self._basic(value):
            return
        raise Problem(401, "a valid bearer token (POST /applications/token) or basic auth is required")

    def _basic(self, value: str) -> bool:
        try:
            client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return self.verifier.check_secret(client_id, secret) is not None
