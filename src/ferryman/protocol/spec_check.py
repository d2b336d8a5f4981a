"""A connector config checked against the connector's spec, as Airbyte's server checks it on
create and update: the spec's ``connectionSpecification`` is a JSON Schema, read as draft-07.

Each problem is told by the field's path and what the spec expects there, never by the value
that was sent: a config holds credentials, and a value the spec refused may be one (a key that
fails its pattern, a token sent as an object). Airbyte's own keywords (``airbyte_secret``,
``order``, ``group``, ...) are not JSON Schema's and are ignored; so is ``format``, which the
Airbyte CDK does not check either (``"format": "date"`` beside a looser ``pattern`` is common).

A config that carries a declarative manifest (``__injected_declarative_manifest``, run by
``airbyte-source-declarative-manifest``) is also checked, without that field, against the
manifest's own spec: the runner's spec is generic, the manifest's is what the source needs.

A ``oneOf`` (an auth method, a replication mode, ...) is told by the choice the config picked:
when its discriminator (a property each choice fixes with ``const``) or its type singles out one
choice, the problems inside that choice; otherwise that the field matches none of the choices,
by their titles, and which discriminator values there are.

``jsonschema`` is imported only when a config is checked: no command that does not create or
edit an actor pays for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ferryman.errors import ConfigSpecError
from ferryman.secrets import MANIFEST_KEY, SecretRules, mask_text, secret_values

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

MAX_OPTIONS = 10  # of an enum or of a oneOf's choices

_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def check_config(spec: dict[str, Any] | None, config: Any, connector: str) -> None:
    """Raise :class:`ConfigSpecError` when ``config`` does not fulfill ``spec``. Nothing is
    checked without a spec (it could not be fetched), or with one that is not a usable draft-07
    schema (the connector's fault, not the user's: it is stored as before)."""
    problems = spec_problems(spec, config)
    manifest = _manifest_spec(config)
    if manifest is not None:  # what the runner will check it against when it runs
        given = {key: value for key, value in config.items() if key != MANIFEST_KEY}
        problems += [p for p in spec_problems(manifest, given) if p not in problems]
    if not problems:
        return
    # Defence in depth: no problem quotes a value, but should one ever, no secret goes with it.
    secrets = secret_values(config, SecretRules.of(spec, config))
    raise ConfigSpecError(connector, [mask_text(problem, secrets) for problem in problems])


def spec_problems(spec: dict[str, Any] | None, config: Any) -> list[str]:
    """What in ``config`` does not fulfill ``spec``, one line each, in the order of the spec's schema."""
    schema = connection_schema(spec)
    if schema is None:
        return []
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import SchemaError, UnknownType
    from referencing.exceptions import Unresolvable

    try:
        Draft7Validator.check_schema(schema)
        errors = list(Draft7Validator(schema).iter_errors(config))
    except (SchemaError, UnknownType, Unresolvable):
        return []
    # A field of the wrong type is told as that alone: what else its schema asks follows from it.
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    problems: list[str] = []
    for error in errors:
        if error.validator != "type" and tuple(error.absolute_path) in mistyped:
            continue
        problems += [p for p in _describe(error) if p not in problems]
    return problems


def _manifest_spec(config: Any) -> dict[str, Any] | None:
    """The spec of a declarative manifest carried in the config: ``airbyte-source-declarative-
    manifest`` reads its real spec from there, and checks the rest of the config against it."""
    manifest = config.get(MANIFEST_KEY) if isinstance(config, dict) else None
    spec = manifest.get("spec") if isinstance(manifest, dict) else None
    return spec if isinstance(spec, dict) else None


def connection_schema(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(spec, dict):
        return None
    schema = spec.get("connectionSpecification", spec.get("connection_specification"))
    return schema if isinstance(schema, dict) and schema else None


# -- one error, told without its value -----------------------------------------------------------


def where(path: Iterable[Any]) -> str:
    """A field's path as ``'credentials.client_id'`` or ``'tunnels[0].host'``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"'{text}'" if text else "the configuration"


def _describe(error: ValidationError) -> list[str]:
    field, kind, schema = where(error.absolute_path), str(error.validator), error.schema
    expected: Any = error.validator_value
    if kind in ("oneOf", "anyOf"):
        return _choice(error)
    if kind == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        path = list(error.absolute_path)
        return [f"{where([*path, name])} is required" for name in expected if name not in present]
    if kind == "additionalProperties" and isinstance(error.instance, dict) and isinstance(schema, dict):
        known = schema.get("properties") or {}
        patterns = list(schema.get("patternProperties") or {})
        extra = sorted(k for k in error.instance if k not in known and not _matches_any(k, patterns))
        return [f"{field} has properties the spec does not define: {', '.join(extra)}"]
    return [f"{field} {_expectation(kind, expected, schema)}"]


def _expectation(kind: str, expected: Any, schema: Any) -> str:
    if kind == "type":
        return "must be " + _type_names(expected)
    if kind == "enum":
        return "must be one of " + _options(expected)
    if kind == "const":
        return f"must be {_literal(expected)}"
    if kind == "pattern":
        described = schema.get("pattern_descriptor") if isinstance(schema, dict) else None
        return f"must be in the form {described}" if described else f"must match the pattern {expected}"
    limits = {
        "minimum": "must be at least {}",
        "maximum": "must be at most {}",
        "exclusiveMinimum": "must be greater than {}",
        "exclusiveMaximum": "must be less than {}",
        "multipleOf": "must be a multiple of {}",
        "minLength": "must be at least {} characters long",
        "maxLength": "must be at most {} characters long",
        "minItems": "must have at least {} items",
        "maxItems": "must have at most {} items",
        "minProperties": "must have at least {} properties",
        "maxProperties": "must have at most {} properties",
    }
    if kind in ("minLength", "minItems") and expected == 1:
        return "must not be empty"
    if kind in limits:
        return limits[kind].format(expected)
    if kind == "uniqueItems":
        return "must not list an item twice"
    return f"does not fulfill the spec's '{kind}' rule"


def _type_names(expected: Any) -> str:
    names = [_TYPES.get(str(t), str(t)) for t in (expected if isinstance(expected, list) else [expected])]
    return " or ".join(names)


def _literal(value: Any) -> str:
    return json.dumps(value).replace('"', "'") if isinstance(value, str) else json.dumps(value)


def _options(values: Any) -> str:
    shown = [_literal(v) for v in list(values)[:MAX_OPTIONS]]
    more = len(values) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _matches_any(key: str, patterns: list[str]) -> bool:
    import re

    return any(re.search(pattern, key) for pattern in patterns)


# -- oneOf / anyOf: the choice the config picked, else that it picked none -------------------------


def _choice(error: ValidationError) -> list[str]:
    field = where(error.absolute_path)
    branches = (
        [b for b in error.validator_value if isinstance(b, dict)]
        if isinstance(error.validator_value, list)
        else []
    )
    names = _options_text([_branch_name(b) for b in branches])
    if not error.context:  # a oneOf that more than one choice fulfils
        return [f"{field} fulfils more than one of its choices ({names}) and must fulfil exactly one"]
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        by_branch.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    depth = len(error.absolute_path)
    open_ = [i for i in range(len(branches)) if not _ruled_out(by_branch.get(i, []), depth)]
    if len(open_) == 1:  # the choice the config picked (its discriminator, or its type)
        problems: list[str] = []
        for sub in by_branch.get(open_[0], []):
            problems += [p for p in _describe(sub) if p not in problems]
        return problems
    told = f"{field} matches none of its choices ({names})"
    hint = _discriminator_hint(branches, error.instance, list(error.absolute_path))
    return [f"{told}: {hint}" if hint else told]


def _ruled_out(errors: list[ValidationError], depth: int) -> bool:
    """A choice the config did not pick: of another type, or another value of a fixed property."""
    for sub in errors:
        at = len(sub.absolute_path)
        if sub.validator == "type" and at == depth:
            return True
        if _fixed(sub.validator, sub.validator_value) and at in (depth, depth + 1):
            return True
    return False


def _fixed(kind: Any, expected: Any) -> bool:
    return kind == "const" or (kind == "enum" and isinstance(expected, list) and len(expected) == 1)


def _fixed_value(schema: Any) -> tuple[bool, Any]:
    if not isinstance(schema, dict):
        return False, None
    if "const" in schema:
        return True, schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and len(enum) == 1:
        return True, enum[0]
    return False, None


def _branch_name(branch: dict[str, Any]) -> str:
    if isinstance(branch.get("title"), str) and branch["title"]:
        return str(branch["title"])
    for prop in (branch.get("properties") or {}).values():
        fixed, value = _fixed_value(prop)
        if fixed:
            return _literal(value)
    return _type_names(branch["type"]) if "type" in branch else "a sub-schema"


def _options_text(names: list[str]) -> str:
    shown = names[:MAX_OPTIONS]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _discriminator_hint(branches: list[dict[str, Any]], instance: Any, path: list[Any]) -> str | None:
    """``set 'credentials.auth_type' to one of ...`` when every choice fixes that property."""
    if not branches:
        return None
    for name in branches[0].get("properties") or {}:
        values = []
        for branch in branches:
            fixed, value = _fixed_value((branch.get("properties") or {}).get(name))
            if not fixed:
                break
            values.append(value)
        else:
            if isinstance(instance, dict) and instance.get(name) in values:
                return None  # picked a choice by it: the problems are elsewhere
            return f"set {where([*path, name])} to one of {_options(values)}"
    return None
