"""A connector's spec (its JSON schema) as an HTML form, and the form posted back as a config.

Each property becomes a field: strings a text input (``airbyte_secret`` ones, numbers too, a
password input that is never filled in, not even when the form comes back with an error),
numbers a number input, booleans a checkbox, ``enum`` a select, arrays of strings a textarea
of one item per line, other arrays and free objects a JSON textarea, objects a fieldset, ``const`` nothing to
type (its value is set), and ``oneOf``/``anyOf`` a select of options, each a sub-form of its own
(only the chosen one is read). Defaults prefill; required fields are marked and checked.

Field names are paths: ``cfg.credentials.api_key``; an option of a oneOf adds ``~N``
(``cfg.credentials~1.api_key``) and the choice itself is posted as ``cfg.credentials~``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ferryman.documents import strict_json
from ferryman.secrets import MASK

ROOT = "cfg"
CHOICE = "~"


@dataclass
class Field:
    name: str  # the input's name
    key: str  # the property in the config ("" for a oneOf option that is a bare value)
    label: str
    widget: str  # text|password|textarea|integer|number|checkbox|select|lines|json|object|oneof|const
    required: bool = False
    help: str = ""
    default: Any = None
    options: list[Any] = field(default_factory=list)  # enum values
    children: list[Field] = field(default_factory=list)  # object's fields, or oneOf's options
    in_choice: bool = False  # inside a oneOf option: the browser must not require it
    number: str = ""  # a password input for a secret number: "integer" or "number"
    secret: bool = False  # airbyte_secret: never filled in (a password input, or a textarea)

    def initial(self, posted: Mapping[str, str] | None) -> str:
        """The text the input shows: what was posted (never a secret), else the default."""
        if self.secret:
            return ""
        if posted is not None:
            return posted.get(self.name, "")
        if self.default is None:
            return ""
        if self.widget == "lines" and isinstance(self.default, list):
            return "\n".join(str(item) for item in self.default)
        if self.widget == "json":
            return json.dumps(self.default, indent=2)
        if isinstance(self.default, bool):
            return "true" if self.default else ""
        return str(self.default)

    def chosen(self, posted: Mapping[str, str] | None) -> int:
        """The option of a oneOf that is picked (the first unless the form says otherwise)."""
        text = (posted or {}).get(self.name + CHOICE, str(self.default or 0))
        return int(text) if text.isdigit() and int(text) < len(self.children) else 0


def _type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind is None and "properties" in schema:
        return "object"
    return str(kind or "string")


def _ordered(properties: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    listed = [(k, v) for k, v in properties.items() if isinstance(v, Mapping)]
    return sorted(listed, key=lambda item: (item[1].get("order", 1_000_000), listed.index(item)))


def build(schema: Mapping[str, Any], name: str = ROOT, key: str = "", required: bool = False) -> Field:
    """The field of one schema (the root: the connector's ``connectionSpecification``)."""
    return _build(schema, name, key, required, in_choice=False)


def _build(schema: Mapping[str, Any], name: str, key: str, required: bool, in_choice: bool) -> Field:
    label = str(schema.get("title") or key or "value")
    description = str(schema.get("description") or "")
    common: dict[str, Any] = {
        "name": name,
        "key": key,
        "label": label,
        "required": required,
        "help": description,
        "default": schema.get("default"),
        "in_choice": in_choice,
    }
    variants = schema.get("oneOf") or schema.get("anyOf")
    if isinstance(variants, list) and variants:
        options = [
            _build(
                {**option, "title": option.get("title") or _variant_title(option, index)},
                f"{name}{CHOICE}{index}",
                "",
                True,
                in_choice=True,
            )
            for index, option in enumerate(o for o in variants if isinstance(o, Mapping))
        ]
        default = schema.get("default")
        picked = next((i for i, o in enumerate(options) if _fits(o, default)), 0)
        if default is not None and options[picked].default is None:
            options[picked].default = default
        return Field(widget="oneof", children=options, **{**common, "default": picked})
    if "const" in schema:
        return Field(widget="const", **{**common, "default": schema["const"]})
    if isinstance(schema.get("enum"), list):
        return Field(widget="select", options=list(schema["enum"]), **common)
    kind = _type(schema)
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            return Field(widget="json", secret=bool(schema.get("airbyte_secret")), **common)
        needed = set(schema.get("required") or [])
        children = [
            _build(sub, f"{name}.{sub_key}", sub_key, sub_key in needed, in_choice)
            for sub_key, sub in _ordered(properties)
            if not sub.get("airbyte_hidden")
        ]
        return Field(widget="object", children=children, **common)
    secret = bool(schema.get("airbyte_secret"))
    if kind == "array":
        # A secret list (of keys, say) is a textarea never filled in: filled with its mask, it
        # was read back as a list holding the mask, and every save of the form was refused.
        items = schema.get("items")
        simple = isinstance(items, Mapping) and _type(items) == "string" and "properties" not in items
        return Field(widget="lines" if simple else "json", secret=secret, **common)
    if kind == "boolean":
        return Field(widget="checkbox", **common)
    if secret and schema.get("multiline"):
        # A private key or a JSON key file: a password input drops the newlines pasted into it.
        return Field(widget="textarea", secret=True, **common)
    if secret:
        # A secret number too: a number input would show the stored value (masked, which the
        # browser then drops, and the save with it) and echo a typed one on an error.
        number = kind if kind in ("integer", "number") else ""
        return Field(widget="password", number=number, secret=True, **common)
    if kind in ("integer", "number"):
        return Field(widget=kind, **common)
    return Field(widget="textarea" if schema.get("multiline") else "text", **common)


def _fits(option: Field, value: Any) -> bool:
    """Whether a oneOf's default is a value of this option (so the option starts chosen)."""
    if value is None or isinstance(value, bool):
        return False
    kinds = {int: ("integer", "number"), float: ("number",), str: ("text", "textarea", "password")}
    if isinstance(value, list):
        return option.widget in ("lines", "json")
    if isinstance(value, dict):
        return option.widget == "object"
    return option.widget in kinds.get(type(value), ())


def _variant_title(option: Mapping[str, Any], index: int) -> str:
    for prop in (option.get("properties") or {}).values():
        if isinstance(prop, Mapping) and "const" in prop:
            return str(prop["const"])
    return f"{_type(option)} (option {index + 1})"


class FormErrors(list[str]):
    """What is wrong with a posted form, one line per field."""


def read(root: Field, posted: Mapping[str, str]) -> tuple[dict[str, Any], FormErrors]:
    """The config a posted form describes, and what is wrong with it."""
    errors = FormErrors()
    value = _read(root, posted, errors, root.label)
    return (value if isinstance(value, dict) else {}), errors


_MISSING = object()


def _read(node: Field, posted: Mapping[str, str], errors: FormErrors, path: str) -> Any:
    """The field's value, or _MISSING when it was left empty (and is not required)."""
    label = path
    if node.widget == "object":
        found: dict[str, Any] = {}
        for child in node.children:
            value = _read(child, posted, errors, child.label)
            if value is not _MISSING:
                found[child.key] = value
        return found
    if node.widget == "oneof":
        option = node.children[node.chosen(posted)]
        return _read(option, posted, errors, f"{label} ({option.label})")
    if node.widget == "const":
        return node.default
    if node.widget == "checkbox":
        return posted.get(node.name) == "true"
    text = posted.get(node.name, "")
    if node.widget not in ("password", "textarea", "lines", "json"):
        text = text.strip()
    if text == "" or (node.widget == "lines" and not text.strip()):
        if node.required:
            errors.append(f"{label} is required")
        return _MISSING
    return _convert(node, text, errors, label)


def _convert(node: Field, text: str, errors: FormErrors, label: str) -> Any:
    if node.secret and text == MASK:
        return MASK  # an edit keeps the stored secret (see keep_secrets)
    if node.widget == "password" and node.number:
        return _secret_number(node.number, text.strip(), errors, label)
    if node.widget == "select":
        for option in node.options:
            if str(option) == text:
                return option
        errors.append(f"{label}: choose one of {', '.join(str(o) for o in node.options)}")
        return _MISSING
    if node.widget == "integer":
        try:
            return int(text)
        except ValueError:
            errors.append(f"{label} must be a whole number, not {text!r}")
            return _MISSING
    if node.widget == "number":
        try:
            number = float(text)
        except ValueError:
            errors.append(f"{label} must be a number, not {text!r}")
            return _MISSING
        if not math.isfinite(number):  # float() takes "nan" and "inf", and "1e999" overflows
            errors.append(f"{label} must be a finite number, not {text!r}")
            return _MISSING
        return int(number) if number.is_integer() and "." not in text else number
    if node.widget == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if node.widget == "textarea":
        return text.replace("\r\n", "\n")  # a browser sends a textarea's lines ended by CRLF
    if node.widget == "json":
        try:
            return strict_json(text)
        except ValueError:  # NaN and Infinity too: JSON has no such numbers
            errors.append(f"{label} must be JSON")
            return _MISSING
    return text


def _secret_number(kind: str, text: str, errors: FormErrors, label: str) -> Any:
    """A secret typed into a password input for a number; an error never quotes it."""
    try:
        number = float(text) if kind == "number" else int(text)
    except ValueError:
        errors.append(f"{label} must be a {'number' if kind == 'number' else 'whole number'}")
        return _MISSING
    if isinstance(number, float) and not math.isfinite(number):
        errors.append(f"{label} must be a finite number")
        return _MISSING
    return int(number) if isinstance(number, float) and number.is_integer() and "." not in text else number


def fill(root: Field, config: Mapping[str, Any]) -> dict[str, str]:
    """What the form shows for a stored config, as if it had been posted: the inverse of
    :func:`read`. Give it the *masked* config: a secret's input is never filled in anyway, and
    its name maps to MASK, which tells :func:`keep_secrets` that a value is stored there."""
    found: dict[str, str] = {}
    _fill(root, config, found)
    return found


def _fill(node: Field, value: Any, found: dict[str, str]) -> None:
    if node.widget == "object":
        if isinstance(value, Mapping):
            for child in node.children:
                if child.key in value:
                    _fill(child, value[child.key], found)
        return
    if node.widget == "oneof":
        index = next((i for i, option in enumerate(node.children) if _holds(option, value)), 0)
        found[node.name + CHOICE] = str(index)
        _fill(node.children[index], value, found)
        return
    if node.widget == "const" or value is None:
        return
    if node.widget == "checkbox":
        found[node.name] = "true" if value is True else ""
    elif node.widget == "lines" and isinstance(value, list):
        found[node.name] = "\n".join(str(item) for item in value)
    elif node.widget == "json" or isinstance(value, (dict, list)):
        found[node.name] = json.dumps(value, indent=2)
    else:
        found[node.name] = str(value)


def _holds(option: Field, value: Any) -> bool:
    """Whether a stored value is of this oneOf option: its consts match, else its shape fits."""
    consts = [child for child in option.children if child.widget == "const"]
    if option.widget == "object" and consts:
        return isinstance(value, Mapping) and all(value.get(c.key) == c.default for c in consts)
    return _fits(option, value)


def keep_secrets(root: Field, posted: Mapping[str, str], stored: Mapping[str, str]) -> dict[str, str]:
    """The posted form of an edit, where each secret input left empty says "keep the stored
    value": MASK in its place, which the service turns back into the stored secret."""
    kept = dict(posted)
    for name in secret_inputs(root):
        if not posted.get(name) and stored.get(name) == MASK:
            kept[name] = MASK
    return kept


def keep_unshown(root: Field, config: dict[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """A config read from a form, with the stored keys the form has no field for (hidden ones,
    keys the spec does not name) put back, so an edit never drops what it could not show."""
    shown = {child.key for child in root.children}
    merged = {key: value for key, value in stored.items() if key not in shown}
    for child in root.children:
        if child.key not in config:
            continue
        value, before = config[child.key], stored.get(child.key)
        if child.widget == "object" and isinstance(value, dict) and isinstance(before, Mapping):
            value = keep_unshown(child, value, before)
        merged[child.key] = value
    return merged


def secret_inputs(root: Field) -> list[str]:
    """The names of the secret inputs: what must never be echoed back to the browser."""
    found = [root.name] if root.secret else []
    for child in root.children:
        found += secret_inputs(child)
    return found
