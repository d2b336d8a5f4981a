"""A connector's spec as a form and back (ferryman.web.forms), and the session signer."""

from __future__ import annotations

from pathlib import Path

from ferryman.web import forms
from ferryman.web.session import ENDED_PRUNE_BYTES, LIFETIME_S, EndedSessions, Signer

SPEC = {
    "type": "object",
    "required": ["host", "port"],
    "properties": {
        "port": {"type": "integer", "default": 5432, "order": 1},
        "host": {"type": "string", "order": 0},
        "ssl_mode": {"type": "string", "enum": ["disable", "require"], "default": "disable"},
        "schemas": {"type": "array", "items": {"type": "string"}},
        "replicate": {"type": "boolean", "default": True},
        "credentials": {
            "title": "Authentication",
            "oneOf": [
                {
                    "title": "Password",
                    "required": ["password"],
                    "properties": {
                        "method": {"const": "password"},
                        "password": {"type": "string", "airbyte_secret": True},
                    },
                },
                {
                    "title": "Key pair",
                    "properties": {"method": {"const": "key"}, "private_key": {"type": "string"}},
                },
            ],
        },
    },
}


def test_fields_follow_the_spec_order_types_defaults_and_secrets() -> None:
    root = forms.build(SPEC)
    widgets = {f.key: f.widget for f in root.children}
    assert [f.key for f in root.children][:2] == ["host", "port"]  # by "order"
    assert widgets == {
        "host": "text", "port": "integer", "ssl_mode": "select", "schemas": "lines",
        "replicate": "checkbox", "credentials": "oneof",
    }  # fmt: skip
    assert root.children[1].initial(None) == "5432"
    credentials = root.children[-1]
    assert [o.label for o in credentials.children] == ["Password", "Key pair"]
    assert forms.secret_inputs(root) == ["cfg.credentials~0.password"]


def test_a_posted_form_becomes_the_config_of_the_chosen_option() -> None:
    root = forms.build(SPEC)
    posted = {
        "cfg.host": " db.internal ",
        "cfg.port": "6543",
        "cfg.ssl_mode": "require",
        "cfg.schemas": "public\n\nsales\n",
        "cfg.credentials~": "1",
        "cfg.credentials~0.password": "not-this-one",
        "cfg.credentials~1.private_key": "KEY",
    }
    config, errors = forms.read(root, posted)
    assert errors == []
    assert config == {
        "host": "db.internal",
        "port": 6543,
        "ssl_mode": "require",
        "schemas": ["public", "sales"],
        "replicate": False,  # an unticked box
        "credentials": {"method": "key", "private_key": "KEY"},
    }


def test_wrong_or_missing_values_are_named_and_secrets_never_shown_again() -> None:
    root = forms.build(SPEC)
    posted = {"cfg.port": "five", "cfg.credentials~": "0", "cfg.credentials~0.password": ""}
    _, errors = forms.read(root, posted)
    assert errors == ["host is required", "port must be a whole number, not 'five'", "password is required"]
    password = root.children[-1].children[0].children[1]
    assert password.widget == "password"
    assert password.initial({"cfg.credentials~0.password": "hunter22"}) == ""


def test_a_oneof_of_plain_values_starts_on_the_option_its_default_fits() -> None:
    schema = {"properties": {"streams": {"oneOf": [{"type": "integer"}, {"type": "array"}], "default": 3}}}
    streams = forms.build(schema).children[0]
    assert streams.chosen(None) == 0 and streams.children[0].initial(None) == "3"
    config, errors = forms.read(forms.build(schema), {"cfg.streams~": "1", "cfg.streams~1": '["a", "b"]'})
    assert errors == [] and config == {"streams": ["a", "b"]}


def test_sessions_are_signed_expire_and_csrf_tokens_belong_to_one_session() -> None:
    signer = Signer(b"k" * 32)
    session = signer.new_session("client", now=1000.0)
    cookie = signer.dump(session)
    assert signer.load(cookie, now=1000.0 + LIFETIME_S - 1) == session
    assert signer.load(cookie, now=1000.0 + LIFETIME_S + 1) is None
    assert Signer(b"o" * 32).load(cookie, now=1000.0) is None  # another server's key
    other = signer.new_session("client", now=1000.0)
    assert signer.csrf_ok(session, signer.csrf_token(session))
    assert not signer.csrf_ok(session, signer.csrf_token(other))
    assert not signer.csrf_ok(session, None)


def test_an_ended_session_is_refused_and_expired_ends_are_dropped_as_the_file_grows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ended"
    signer = Signer(b"k" * 32, EndedSessions(path))
    kept = signer.new_session("client", now=10_000.0)
    cookie = signer.dump(kept)
    signer.end(kept)
    assert signer.load(cookie, now=10_000.0) is None
    assert Signer(b"k" * 32, EndedSessions(path)).load(cookie, now=10_000.0) is None  # another server
    ended = EndedSessions(path)
    while path.stat().st_size <= ENDED_PRUNE_BYTES:  # logouts pile up...
        ended.end(signer.new_session("client", now=0.0), now=10_000.0)
    ended.end(signer.new_session("client", now=0.0), now=50_000.0)  # (now long expired)
    assert path.stat().st_size < 100  # ...until one more logout drops the expired ones
    assert signer.load(cookie, now=50_000.0) is None  # and keeps the one not expired yet


def test_a_stored_config_fills_its_form_and_reads_back_the_same() -> None:
    root = forms.build(SPEC)
    stored = {
        "host": "db.internal",
        "port": 6543,
        "ssl_mode": "require",
        "schemas": ["public", "sales"],
        "replicate": False,
        "credentials": {"method": "key", "private_key": "-----KEY-----"},
    }
    shown = forms.fill(root, stored)
    assert shown["cfg.credentials~"] == "1"  # the option whose const the config holds
    assert shown["cfg.schemas"] == "public\nsales"
    config, errors = forms.read(root, shown)
    assert errors == []
    assert config == stored


def test_an_edit_keeps_a_secret_left_empty_and_the_keys_it_has_no_field_for() -> None:
    root = forms.build(SPEC)
    masked = {"host": "h", "port": 1, "credentials": {"method": "password", "password": "**********"}}
    shown = forms.fill(root, masked)
    assert root.children[-1].children[0].children[1].initial(shown) == ""  # never filled in
    posted = {**shown, "cfg.host": "other", "cfg.credentials~0.password": ""}  # left empty
    config, errors = forms.read(root, forms.keep_secrets(root, posted, shown))
    assert errors == []
    assert config["credentials"] == {
        "method": "password",
        "password": "**********",
    }  # the service restores it
    typed = {**posted, "cfg.credentials~0.password": "new-one"}
    config, _ = forms.read(root, forms.keep_secrets(root, typed, shown))
    assert config["credentials"]["password"] == "new-one"

    stored = {"host": "h", "port": 1, "hidden_token_expiry": "2030", "credentials": {"method": "password"}}
    merged = forms.keep_unshown(root, {"host": "other", "port": 1}, stored)
    assert merged == {"host": "other", "port": 1, "hidden_token_expiry": "2030"}


def test_no_stored_secret_no_mask_an_empty_optional_secret_stays_out() -> None:
    spec = {"type": "object", "properties": {"token": {"type": "string", "airbyte_secret": True}}}
    root = forms.build(spec)
    shown = forms.fill(root, {})
    config, errors = forms.read(root, forms.keep_secrets(root, {}, shown))
    assert (config, errors) == ({}, [])


def test_a_secret_list_or_key_file_is_never_filled_in_and_an_edit_that_leaves_it_empty_keeps_it() -> None:
    spec = {
        "type": "object",
        "properties": {
            "keys": {"type": "array", "items": {"type": "string"}, "airbyte_secret": True},
            "key_file": {"type": "string", "airbyte_secret": True, "multiline": True},
        },
    }
    root = forms.build(spec)
    assert sorted(forms.secret_inputs(root)) == ["cfg.key_file", "cfg.keys"]
    assert [child.widget for child in root.children] == ["lines", "textarea"]  # keeps its newlines
    shown = forms.fill(root, {"keys": "**********", "key_file": "**********"})  # the masked config
    assert all(child.initial(shown) == "" for child in root.children)
    config, errors = forms.read(root, forms.keep_secrets(root, {"cfg.keys": "", "cfg.key_file": ""}, shown))
    assert (config, errors) == ({"keys": "**********", "key_file": "**********"}, [])  # the service restores
    typed = {"cfg.keys": "k1\r\nk2\r\n", "cfg.key_file": "-----BEGIN-----\r\nAAAA\r\n-----END-----"}
    config, _ = forms.read(root, forms.keep_secrets(root, typed, shown))
    assert config == {"keys": ["k1", "k2"], "key_file": "-----BEGIN-----\nAAAA\n-----END-----"}


def test_numbers_json_cannot_hold_are_named_not_saved_as_null() -> None:
    """float() reads "nan", "inf" and "1e999", and json.loads reads NaN: each was stored, then
    written out for the connector as null."""
    spec = {
        "type": "object",
        "properties": {
            "ratio": {"type": "number"},
            "pin": {"type": "number", "airbyte_secret": True},
            "extra": {"type": "object"},
        },
    }
    root = forms.build(spec)
    assert [f.widget for f in root.children] == ["number", "password", "json"]
    posted = {"cfg.ratio": "nan", "cfg.pin": "1e999", "cfg.extra": '{"limit": Infinity}'}
    _, errors = forms.read(root, posted)
    assert errors == [
        "ratio must be a finite number, not 'nan'",
        "pin must be a finite number",
        "extra must be JSON",
    ]
    config, errors = forms.read(root, {"cfg.ratio": "0.25", "cfg.pin": "12", "cfg.extra": '{"limit": 1.5}'})
    assert errors == [] and config == {"ratio": 0.25, "pin": 12, "extra": {"limit": 1.5}}
