"""The payload examples in docs/notifications.md are what the code sends for the same event, a
webhook URL is shown without the path that holds its token, and the delivery knobs are checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ferryman.errors import UserInputError
from ferryman.notifications import DeliveryPolicy
from ferryman.notifications.payloads import render, shown_url

DOC = Path(__file__).parents[2] / "docs" / "notifications.md"
BASE = "https://ferryman.example.com"
CONNECTION = {"id": 3, "uuid": "9b1f0c7e-2d4a-4f5e-8a61-0c2b7d9e4f10", "name": "pg-to-duckdb"}
FAILED: dict[str, Any] = {
    "connection": CONNECTION,
    "job": {
        "id": 42,
        "type": "sync",
        "status": "failed",
        "attempts": 3,
        "created_at": "2026-12-20T09:00:00.120000+00:00",
        "started_at": "2026-12-20T09:00:01.004000+00:00",
        "ended_at": "2026-12-20T09:03:12.551000+00:00",
    },
    "records_committed": 12840,
    "bytes_committed": 3912044,
    "failure": {
        "message": 'password authentication failed for user "etl" (password **********)',
        "type": "config_error",
        "origin": "source",
        "stream": None,
    },
}
SUCCEEDED = {**FAILED, "job": {**FAILED["job"], "status": "succeeded", "attempts": 1}, "failure": None}
DISABLED = {"connection": CONNECTION, "reason": "100 consecutive failed jobs"}
EVENTS = {"failure": (FAILED, 17), "success": (SUCCEEDED, 18), "disabled": (DISABLED, 19)}


def documented() -> list[tuple[str, str, Any]]:
    found = re.findall(r"<!-- example: (\w+) (\w+) -->\n```json\n(.*?)\n```", DOC.read_text(), re.DOTALL)
    return [(kind, format, json.loads(body)) for kind, format, body in found]


@pytest.mark.parametrize(("kind", "format", "example"), documented())
def test_the_documented_payload_is_the_one_sent(kind: str, format: str, example: Any) -> None:
    detail, event_id = EVENTS[kind]
    assert render(kind, detail, format, BASE, event_id) == example


def test_every_format_of_failure_and_disabled_is_documented() -> None:
    shown = {(kind, format) for kind, format, _ in documented()}
    assert {("failure", "slack"), ("failure", "json"), ("disabled", "slack"), ("disabled", "json")} <= shown


def test_a_cancelled_reset_reads_as_one() -> None:
    detail = {**SUCCEEDED, "job": {**SUCCEEDED["job"], "type": "reset_connection", "status": "cancelled"}}
    text = render("cancelled", detail, "slack", BASE + "/", 1)["text"]
    assert text.startswith("Reset of connection pg-to-duckdb was cancelled (job 42, 1 attempt)")
    assert text.endswith("\nhttps://ferryman.example.com/v1/jobs/42")


def test_a_long_failure_message_is_cut_in_the_slack_text_and_whole_in_the_json() -> None:
    # An API's error body quoted whole by a connector: one line of 50,000 characters. Discord's
    # /slack endpoint refuses a text over 2,000 characters with a 400, so nobody was told.
    message = "HTTP 400 from the API: " + '{"error": "bad request", "field": "x"}' * 1300
    detail = {
        **FAILED,
        "connection": {**CONNECTION, "name": "n" * 255},
        "failure": {**FAILED["failure"], "message": message},
    }
    text = render("failure", detail, "slack", BASE, 17)["text"]
    assert len(text) < 1000
    assert "\nsource config_error: HTTP 400 from the API: {" in text and "...\nhttps://" in text
    assert render("failure", detail, "json", BASE, 17)["failure"]["message"] == message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXXtoken", "https://hooks.slack.com/..."),
        ("http://user:pw@127.0.0.1:8080/hook?key=abc", "http://127.0.0.1:8080/..."),
        ("http://user:pw@[::1]:8080/hook", "http://[::1]:8080/..."),  # was "http://::1:8080/..."
        ("http://127.0.0.1:80a/hook", "http://(invalid URL)/..."),  # stored before URLs were checked
        ("https://user:pw@[::1/hook", "https://(invalid URL)/..."),
    ],
)
def test_a_webhook_url_is_shown_as_scheme_and_host(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FERRYMAN_NOTIFY_TIMEOUT_S", "inf"),
        ("FERRYMAN_NOTIFY_BACKOFF_S", "nan"),
        ("FERRYMAN_NOTIFY_POLL_S", "inf"),
    ],
)
def test_a_delivery_knob_that_is_not_a_finite_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    # Taken before: an endless timeout made an endless lease, and every pass failed on it
    # ("cannot convert float infinity to integer"); nothing was ever posted.
    monkeypatch.setenv(name, value)
    with pytest.raises(UserInputError, match=f"{name} must be a finite number, got '{value}'"):
        DeliveryPolicy.from_env()


def test_a_name_stored_before_names_were_checked_stays_on_one_short_line_of_the_slack_text() -> None:
    # Names with a line break, or 10,000 characters long, were refused only from some release on;
    # SQLite kept older ones. A line break forged a line ("...succeeded\nhttps://evil"), and a
    # name of 10,000 "&" (50,000 characters escaped) made a text every chat tool refuses.
    forged = "pg\nSync of connection pg succeeded.\u2028https://evil.example\u202e"
    detail = {**FAILED, "connection": {**CONNECTION, "name": forged}}
    text = render("failure", detail, "slack", BASE, 17)["text"]
    assert text.startswith(
        "Sync of connection pg Sync of connection pg succeeded. https://evil.example failed (job 42,"
    )
    assert len(text.split("\n")) == 3
    huge = {**FAILED, "connection": {**CONNECTION, "name": "&" * 10_000}}
    head = render("failure", huge, "slack", BASE, 17)["text"].split("\n")[0]
    assert head.startswith("Sync of connection " + "&amp;" * 39 + "... failed (job 42,")  # no cut "&am"
    assert render("failure", huge, "json", BASE, 17)["connection"]["name"] == "&" * 10_000


def test_unicode_in_a_name_and_a_message_is_kept_as_written() -> None:
    detail = {
        **FAILED,
        "connection": {**CONNECTION, "name": "Ventes — été 📈 日本"},
        "failure": {**FAILED["failure"], "message": "Ошибка: ops@example.com denied"},
    }
    text = render("failure", detail, "slack", BASE, 17)["text"]
    assert text.startswith("Sync of connection Ventes — été 📈 日本 failed")
    assert "\nsource config_error: Ошибка: ops@example.com denied\n" in text  # an address is no mention
