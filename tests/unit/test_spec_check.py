"""A config checked against a connector's spec: what each problem says, and that none ever
carries a value of the config (the surfaces' tests drive it through the CLI, the API and the UI)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.errors import ConfigSpecError, UserInputError
from ferryman.protocol.spec_check import check_config, spec_problems


def spec(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"connectionSpecification": {"type": "object", "properties": properties, **extra}}


AUTH = spec(
    {
        "credentials": {
            "type": "object",
            "oneOf": [
                {
                    "title": "OAuth2.0",
                    "required": ["auth_type", "client_id"],
                    "properties": {"auth_type": {"enum": ["oauth2.0"]}, "client_id": {"type": "string"}},
                },
                {
                    "title": "API Key",
                    "required": ["auth_type", "api_key"],
                    "properties": {
                        "auth_type": {"const": "api_key"},
                        "api_key": {"type": "string", "airbyte_secret": True, "minLength": 20},
                    },
                },
            ],
        }
    }
)


def test_no_spec_or_one_that_is_not_draft_07_checks_nothing() -> None:
    assert spec_problems(None, {"count": "many"}) == []
    assert spec_problems({"documentationUrl": "x"}, {"count": "many"}) == []
    assert spec_problems(spec({"count": {"type": "int"}}), {"count": "many"}) == []  # a bad schema
    assert spec_problems(spec({"count": {"required": True}}), {}) == []  # draft-3's required
    assert spec_problems(spec({"count": {"$ref": "https://example.invalid/s.json"}}), {"count": 1}) == []


def test_airbyte_keywords_and_format_are_not_checked() -> None:
    marked = {"type": "string", "airbyte_secret": True, "order": 0, "group": "g", "always_show": True}
    dated = {"type": "string", "format": "date-time", "airbyte_hidden": True}
    assert spec_problems(spec({"key": marked, "since": dated}), {"key": "k", "since": "2024-01-01"}) == []


def test_each_keyword_is_told_by_the_fields_path_and_what_is_expected() -> None:
    properties = {
        "region": {"enum": ["us", "eu"]},
        "port": {"type": "integer", "maximum": 65535},
        "host": {"type": ["string", "null"], "minLength": 1},
        "tunnels": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    }
    config = {"region": "mars", "port": 70000, "host": "", "tunnels": [{}, {"name": 1}], "odd": 1}
    assert spec_problems(spec(properties, additionalProperties=False), config) == [
        "'region' must be one of 'us', 'eu'",
        "'port' must be at most 65535",
        "'host' must not be empty",
        "'tunnels[0].name' is required",
        "the configuration has properties the spec does not define: odd",
    ]


def test_a_field_of_the_wrong_type_is_told_once() -> None:
    # a string where an object with a oneOf is expected: the oneOf's own complaint follows from it
    assert spec_problems(AUTH, {"credentials": "token"}) == ["'credentials' must be an object"]


def test_a_oneof_is_told_by_the_choice_its_discriminator_picks_else_by_its_choices() -> None:
    picked = {"credentials": {"auth_type": "api_key", "api_key": "short"}}
    assert spec_problems(AUTH, picked) == ["'credentials.api_key' must be at least 20 characters long"]
    assert spec_problems(AUTH, {"credentials": {"auth_type": "oauth2.0"}}) == [
        "'credentials.client_id' is required"
    ]
    none = "'credentials' matches none of its choices (OAuth2.0, API Key): "
    hint = "set 'credentials.auth_type' to one of 'oauth2.0', 'api_key'"
    assert spec_problems(AUTH, {"credentials": {}}) == [none + hint]
    assert spec_problems(AUTH, {"credentials": {"auth_type": "basic"}}) == [none + hint]


def test_a_oneof_without_a_discriminator_is_told_by_type_or_by_its_choices() -> None:
    streams = spec(
        {
            "streams": {
                "oneOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                ]
            }
        }
    )
    assert spec_problems(streams, {"streams": ["a", "a"]}) == ["'streams' must not list an item twice"]
    assert spec_problems(streams, {"streams": -1}) == ["'streams' must be at least 0"]
    assert spec_problems(streams, {"streams": "a"}) == [
        "'streams' matches none of its choices (an integer, an array)"
    ]
    both = spec({"n": {"oneOf": [{"type": "integer"}, {"type": "number"}]}})
    assert spec_problems(both, {"n": 1}) == [
        "'n' fulfils more than one of its choices (an integer, a number) and must fulfil exactly one"
    ]


def test_the_error_is_one_line_of_user_input_telling_five_problems_and_counting_the_rest() -> None:
    seven = spec({f"f{i}": {"type": "integer"} for i in range(7)})
    with pytest.raises(ConfigSpecError) as raised:
        check_config(seven, {f"f{i}": "x" for i in range(7)}, "pypi:airbyte-source-x==1.0.0")
    assert isinstance(raised.value, UserInputError)
    assert str(raised.value) == (
        "the configuration does not fulfill the specification of pypi:airbyte-source-x==1.0.0: "
        "'f0' must be an integer; 'f1' must be an integer; 'f2' must be an integer; "
        "'f3' must be an integer; 'f4' must be an integer; and 2 more"
    )
    assert len(raised.value.problems) == 7
    check_config(seven, {"f0": 1}, "pypi:airbyte-source-x==1.0.0")  # fulfils it: no error


SECRET_SPEC = spec(
    {
        "api_key": {"type": "string", "airbyte_secret": True, "pattern": "^k-[0-9]{4}$", "maxLength": 6},
        "pin": {"type": "integer", "airbyte_secret": True, "enum": [1, 2]},
        "keys": {"type": "array", "items": {"type": "string", "const": "a"}, "airbyte_secret": True},
    },
    required=["api_key"],
)
# Letters and numbers no problem of this spec is made of: any of them in a problem came from the config.
ALIEN = "QXZJVW"
words = st.text(alphabet=ALIEN, min_size=3, max_size=12)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=10**6)
    | st.floats(min_value=1e6, max_value=1e12)
    | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=6,
)


@given(api_key=values, pin=values, keys=values)
def test_no_problem_ever_holds_a_value_of_the_config(api_key: Any, pin: Any, keys: Any) -> None:
    text = "; ".join(spec_problems(SECRET_SPEC, {"api_key": api_key, "pin": pin, "keys": keys}))
    assert not set(text) & set(ALIEN)
    for leaf in _numbers([api_key, pin, keys]):
        assert leaf not in text


def _numbers(value: Any) -> list[str]:
    if isinstance(value, dict):
        return _numbers(list(value.values()))
    if isinstance(value, list):
        return [leaf for v in value for leaf in _numbers(v)]
    return [str(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_a_declarative_manifest_s_own_spec_is_checked_too() -> None:
    # airbyte-source-declarative-manifest's spec is generic: the source's real one is in the
    # manifest the config carries, and the runner checks the rest of the config against it when
    # it runs. Before, a config missing the manifest's required fields was stored as fine.
    runner = spec(
        {"__injected_declarative_manifest": {"type": "object"}}, required=["__injected_declarative_manifest"]
    )
    manifest = {
        "version": "6.5.2",
        "spec": {
            "type": "Spec",
            "connection_specification": {
                "type": "object",
                "required": ["base_url", "api_key"],
                "additionalProperties": False,
                "properties": {
                    "base_url": {"type": "string"},
                    "api_key": {"type": "string", "airbyte_secret": True},
                    "page_size": {"type": "integer", "minimum": 1},
                },
            },
        },
    }
    secret = "tok-NEVER-shown-81f2"
    config = {"__injected_declarative_manifest": manifest, "api_key": secret, "page_size": "ten"}
    with pytest.raises(ConfigSpecError) as refused:
        check_config(runner, config, "pypi:airbyte-source-declarative-manifest")
    assert refused.value.problems == ["'base_url' is required", "'page_size' must be an integer"]
    assert secret not in str(refused.value)
    # The manifest's field itself is not one the manifest's spec must define.
    check_config(runner, {**config, "page_size": 10, "base_url": "http://x"}, "pypi:x")
