"""MAX_*_WORKERS: how many jobs of each worker type one engine process runs at once."""

from __future__ import annotations

from collections.abc import Mapping

from ferryman.errors import UserInputError

DEFAULT_LIMIT = 5
# Airbyte's documentation says MAX_DISCOVERY_WORKERS, its code reads MAX_DISCOVER_WORKERS.
_NAMES = {
    "spec": ("MAX_SPEC_WORKERS",),
    "check": ("MAX_CHECK_WORKERS",),
    "discover": ("MAX_DISCOVERY_WORKERS", "MAX_DISCOVER_WORKERS"),
    "sync": ("MAX_SYNC_WORKERS",),
}


def worker_limits(env: Mapping[str, str]) -> dict[str, int]:
    limits = {}
    for slot, names in _NAMES.items():
        limits[slot] = DEFAULT_LIMIT
        for name in names:
            raw = env.get(name)
            if raw:
                try:
                    limits[slot] = int(raw)
                except ValueError:
                    raise UserInputError(f"{name} must be a whole number, got {raw!r}") from None
                if limits[slot] < 1:
                    raise UserInputError(f"{name} must be at least 1, got {raw!r}")
                break
    return limits
