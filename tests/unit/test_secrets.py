"""The masking rules of ferryman.secrets, case by case (docs/secrets.md has the same table)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from ferryman.secrets import (
    MANIFEST_KEY,
    MASK,
    SecretRules,
    mask_config,
    mask_head,
    mask_text,
    secret_keys,
    secret_values,
)


def spec_of(properties: dict[str, Any]) -> dict[str, Any]:
    return {"connectionSpecification": {"type": "object", "properties": properties}}


SECRET = {"type": "string", "airbyte_secret": True}
NESTED_SPEC = spec_of(
    {
        "host": {"type": "string"},
        "password": SECRET,
        "auth": {
            "oneOf": [
                {"properties": {"auth_type": {"const": "token"}, "api_token": SECRET}},
                {"properties": {"auth_type": {"const": "password"}, "user": {"type": "string"}}},
            ]
        },
        "tunnel": {"anyOf": [{"properties": {"ssh_key": SECRET}}]},
        "accounts": {"type": "array", "items": {"type": "object", "properties": {"account_pin": SECRET}}},
        "deep": {"properties": {"deeper": {"properties": {"signing_salt": SECRET}}}},
    }
)


def masked_text(config: dict[str, Any], text: str, spec: dict[str, Any] | None = None) -> str:
    return mask_text(text, secret_values(config, SecretRules.of(spec, config)))


def test_secret_keys_are_found_in_one_of_any_of_items_and_nested_properties() -> None:
    assert secret_keys(NESTED_SPEC) == {"password", "api_token", "ssh_key", "account_pin", "signing_salt"}


def test_nested_secrets_are_masked_in_the_config_and_in_text() -> None:
    config = {
        "host": "db.example",
        "password": "hunter22",
        "auth": {"auth_type": "token", "api_token": "tok-123456"},
        "tunnel": {"ssh_key": "ssh-key-material"},
        "accounts": [{"account_pin": "pin-778899"}, {"account_pin": "pin-112233"}],
        "deep": {"deeper": {"signing_salt": "salty-salt"}},
    }
    rules = SecretRules.of(NESTED_SPEC, config)
    assert mask_config(config, rules) == {
        "host": "db.example",
        "password": MASK,
        "auth": {"auth_type": "token", "api_token": MASK},
        "tunnel": {"ssh_key": MASK},
        "accounts": [{"account_pin": MASK}, {"account_pin": MASK}],
        "deep": {"deeper": {"signing_salt": MASK}},
    }
    text = "hunter22 tok-123456 ssh-key-material pin-778899 pin-112233 salty-salt at db.example"
    assert mask_text(text, secret_values(config, rules)) == " ".join([MASK] * 6) + " at db.example"


def test_a_secret_array_is_masked_whole_in_the_config_and_each_element_in_text() -> None:
    spec = spec_of({"api_keys": {"type": "array", "items": {"type": "string"}, "airbyte_secret": True}})
    config = {"api_keys": ["first-key-0001", "second-key-0002"]}
    assert mask_config(config, SecretRules.of(spec, config)) == {"api_keys": MASK}
    assert (
        masked_text(config, "tried first-key-0001 then second-key-0002", spec) == f"tried {MASK} then {MASK}"
    )


def test_a_secret_array_under_a_credential_name_is_masked_without_a_spec() -> None:
    config = {"tokens": ["first-token-01", "second-token-02"]}
    assert mask_config(config, SecretRules()) == {"tokens": [MASK, MASK]}
    assert masked_text(config, "first-token-01,second-token-02") == f"{MASK},{MASK}"


ODD_SECRET = 'p"a\\ss\tw\nörd-✓'  # a quote, a backslash, a tab, a newline, non-ASCII


@pytest.mark.parametrize(
    ("form", "how"),
    [
        (ODD_SECRET, "as is"),
        (json.dumps(ODD_SECRET)[1:-1], "JSON, ensure_ascii=True"),
        (json.dumps(ODD_SECRET, ensure_ascii=False)[1:-1], "JSON, ensure_ascii=False"),
        (json.dumps(json.dumps(ODD_SECRET)[1:-1])[1:-1], "JSON inside a JSON string"),
        (
            json.dumps(ODD_SECRET)[1:-1].replace("\\u00f6", "\\u00F6"),
            "JSON, upper hex",
        ),
        (repr(ODD_SECRET)[1:-1], "Python repr"),
        (quote(ODD_SECRET, safe=""), "URL-encoded"),
        (quote_plus(ODD_SECRET), "form-encoded"),
        (base64.b64encode(ODD_SECRET.encode()).decode(), "base64"),
        (base64.urlsafe_b64encode(ODD_SECRET.encode()).decode(), "URL-safe base64"),
    ],
)
def test_encoded_forms_of_a_secret_are_masked(form: str, how: str) -> None:
    config = {"password": ODD_SECRET}
    # The line as a connector logging JSON (or a URL, or a header) wrote it.
    line = '{"level": "INFO", "message": "connecting with ' + form + ' now"}'
    masked = masked_text(config, line)
    assert form not in masked, how
    assert MASK in masked and "connecting with" in masked and "now" in masked, how


@pytest.mark.parametrize("user", ["u", "us", "use", "someone"])
def test_a_secret_inside_a_basic_auth_header_is_masked_at_any_byte_alignment(user: str) -> None:
    password = "correct-horse-battery"
    header = "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    masked = masked_text({"password": password}, header)
    assert MASK in masked
    # The mask covers the password's characters but for the (at most 4) it shares a group with.
    encoded = header.removeprefix("Authorization: Basic ")
    covered = len(encoded) - len(masked.removeprefix("Authorization: Basic ").replace(MASK, ""))
    assert covered >= len(base64.b64encode(password.encode())) - 4


def test_each_line_of_a_multi_line_secret_is_masked() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END KEY-----"
    masked = masked_text({"private_key": key}, "bad line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
    assert masked == f"bad line: {MASK}"


MANIFEST_CONFIG = {
    MANIFEST_KEY: {
        "version": "6.0.0",
        "spec": {
            "connection_specification": {
                "type": "object",
                "properties": {
                    "bearer": {"type": "string", "airbyte_secret": True},
                    "region": {"type": "string", "enum": ["eu-west", "us-east"]},
                },
            }
        },
    },
    "bearer": "manifest-declared-0042",
    "region": "eu-west",
}
RUNNER_SPEC = spec_of({MANIFEST_KEY: {"type": "object"}})  # the runner's spec knows nothing of it


def test_fields_a_declarative_manifest_marks_secret_are_masked() -> None:
    rules = SecretRules.of(RUNNER_SPEC, MANIFEST_CONFIG)
    masked = mask_config(MANIFEST_CONFIG, rules)
    assert masked["bearer"] == MASK and masked["region"] == "eu-west"
    assert masked_text(MANIFEST_CONFIG, "GET with manifest-declared-0042", RUNNER_SPEC) == f"GET with {MASK}"


@pytest.mark.parametrize(
    ("config", "field_shown", "text", "text_shown"),
    [
        # Guessed by name, but not a string: never a secret.
        ({"use_auth": True}, True, "True: 3 records", "True: 3 records"),
        ({"max_tokens": 100}, 100, "100 records", "100 records"),
        # A name that holds a choice, not a secret.
        ({"auth_type": "password"}, "password", "check username, password or key", None),
        # A common word under a credential name: the field is masked, the word in text is not.
        ({"auth": "password"}, MASK, "check username, password or key", None),
        # Too short to replace by text.
        ({"password": "abc12"}, MASK, "abc12 rows", None),
        # A number, too short to replace by text.
        ({"api_key": "123456789"}, MASK, "123456789 bytes", None),
        # Long enough: masked by text.
        ({"password": "s3cr3t-enough"}, MASK, "login s3cr3t-enough", f"login {MASK}"),
        ({"api_key": "1234567890123"}, MASK, "key 1234567890123", f"key {MASK}"),
    ],
)
def test_over_masking_rules_without_a_spec(
    config: dict[str, Any], field_shown: Any, text: str, text_shown: str | None
) -> None:
    key = next(iter(config))
    assert mask_config(config, SecretRules())[key] == field_shown
    assert masked_text(config, text) == (text if text_shown is None else text_shown)


def test_a_spec_option_is_never_a_secret_but_a_marked_field_is_masked_whatever_its_value() -> None:
    spec = spec_of(
        {
            "credentials": {"type": "string", "enum": ["oauth_client", "service_account"]},
            "port_secret": {"type": "integer", "airbyte_secret": True},
            "pin": {"type": "string", "airbyte_secret": True},
        }
    )
    config = {"credentials": "service_account", "port_secret": 4242, "pin": "9911"}
    rules = SecretRules.of(spec, config)
    assert mask_config(config, rules) == {"credentials": "service_account", "port_secret": MASK, "pin": MASK}
    text = "using service_account on 4242 with 9911"
    assert mask_text(text, secret_values(config, rules)) == text


def test_a_cut_line_never_ends_in_the_start_of_a_secret_and_an_uncut_one_is_left_alone() -> None:
    values = secret_values({"password": "opensesame-42"}, SecretRules())
    # The cut runs through the secret: masked whole, and the mask ends what is kept.
    assert mask_head("x" * 10 + "opensesame-42 tail", 15, values) == "x" * 10 + MASK
    # The text itself ends inside the secret (the rest was never read): its start is masked.
    assert mask_head("x" * 10 + "opensesa", 16, values) == "x" * 10 + MASK
    # Fewer than MIN_CUT_CHARS of its first characters are not worth a mask.
    assert mask_head("x" * 10 + "opensesame", 12, values) == "x" * 10 + "op"
    # Uncut text ending like a secret begins is not a secret.
    assert mask_head("knock: opensesa", 100, values) == "knock: opensesa"
    assert mask_head("opensesame-42 and " + "z" * 50, 20, values) == f"{MASK} and zz"


@pytest.mark.parametrize(
    ("secret", "written", "encoder"),
    [
        ("ab/cd+ef==xyz", r"ab\/cd+ef==xyz", "PHP json_encode, org.json: a slash escaped"),
        ("ab/cd+ef==xyz", r"ab/cd+ef\u003d\u003dxyz", "Gson: '=' escaped"),
        ("tok=en<&>'q", r"tok\u003den\u003c\u0026\u003e\u0027q", "Gson: HTML characters escaped"),
        ("pässwörd-✓", r"p\u00E4ssw\u00f6rd-\u2713", "hex digits of both cases in one string"),
        ("emoji-😀-pw", r"emoji-\uD83D\uDE00-pw", "a surrogate pair in upper case"),
    ],
)
def test_a_secret_json_escaped_by_any_encoder_is_masked(secret: str, written: str, encoder: str) -> None:
    line = '{"level": "DEBUG", "config": {"password": "' + written + '"}}'
    assert (
        masked_text({"password": secret}, line)
        == '{"level": "DEBUG", "config": {"password": "' + MASK + '"}}'
    ), encoder
