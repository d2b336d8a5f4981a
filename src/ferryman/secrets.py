"""Secrets in connector configs: the fields a spec marks ``airbyte_secret``.

Pure helpers: which values are secret, a config with them masked, text with them masked.
When the spec is unknown, fields whose names look like credentials are treated as secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MASK = "**********"
_SECRET_NAME = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|private[_-]?key|credential|access[_-]?key|auth)",
    re.IGNORECASE,
)


def _secret_keys(schema: Any) -> Iterator[str]:
    """Property names marked airbyte_secret anywhere in a JSON schema (incl. oneOf branches)."""
    if isinstance(schema, dict):
        for name, prop in (schema.get("properties") or {}).items():
            if isinstance(prop, dict) and prop.get("airbyte_secret"):
                yield name
        for value in schema.values():
            if isinstance(value, dict | list):
                yield from _secret_keys(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _secret_keys(item)


def secret_keys(spec: dict[str, Any] | None) -> set[str]:
    if not spec:
        return set()
    return set(_secret_keys(spec.get("connectionSpecification") or spec))


def _is_secret(key: str, keys: set[str] | None) -> bool:
    return key in keys if keys is not None else bool(_SECRET_NAME.search(key))


def secret_values(config: Any, keys: set[str] | None = None) -> list[str]:
    """Every string value under a secret key; ``keys=None`` means guess from field names."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if _is_secret(str(key), keys) and isinstance(value, str | int) and str(value):
                    found.append(str(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return sorted(set(found), key=len, reverse=True)


def mask_config(config: Any, keys: set[str] | None = None) -> Any:
    if isinstance(config, dict):
        return {
            k: MASK if _is_secret(str(k), keys) and not isinstance(v, dict | list) else mask_config(v, keys)
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [mask_config(item, keys) for item in config]
    return config


def mask_text(text: str, values: list[str]) -> str:
    for value in values:
        if len(value) >= 3 and value in text:
            text = text.replace(value, MASK)
    return text
