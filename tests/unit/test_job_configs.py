"""Job configs and attempt outcomes as typed, versioned structures, and the JSON stores keep."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.errors import FieldError
from ferryman.jobs.configs import ConfigDocumentError, ConnectorJobConfig, ReplicationConfig
from ferryman.jobs.failures import FailureOrigin, FailureType
from ferryman.jobs.outcomes import ConnectorOutcome, ReplicationOutcome, failure_summary

# A sync config as stores written it before configs had a version.
STORED_SYNC: dict[str, Any] = {
    "connection_id": 7,
    "source": {"actor_id": 1, "connector": "builtin:source-bench", "config": {"count": 10}},
    "destination": {
        "actor_id": 2,
        "connector": "docker:dst:1",
        "config": {"path": "/local/x"},
        "resources": {"memory_limit": "1g"},
        "spec": {"connectionSpecification": {}},
    },
    "catalog": {"streams": []},
    "namespace": {"definition": "customformat", "format": "raw_${SOURCE_NAMESPACE}", "prefix": "p_"},
}


def test_a_config_stored_before_versions_reads_as_version_1_and_keeps_its_shape() -> None:
    config = ReplicationConfig.from_document(STORED_SYNC)

    assert config.version == 1
    assert config.connection_id == 7
    assert config.source.config == {"count": 10} and config.source.spec is None
    assert config.destination.resources == {"memory_limit": "1g"}
    assert config.namespace.format == "raw_${SOURCE_NAMESPACE}" and config.namespace.prefix == "p_"
    document = config.to_document()
    assert document["version"] == 1
    assert {k: v for k, v in document["destination"].items() if v is not None} == STORED_SYNC["destination"]
    assert ReplicationConfig.from_document(document) == config


def test_a_spec_job_config_needs_only_its_connector() -> None:
    config = ConnectorJobConfig.from_document({"connector": "builtin:source-bench"})
    assert config.actor.connector == "builtin:source-bench" and config.actor.config is None


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({}, "missing required field `connector`"),
        ({"connector": "builtin:x", "version": 2}, "newer ferryman"),
        ({"connector": 5}, "Expected `str`"),
    ],
)
def test_a_config_that_cannot_work_is_one_line_naming_what_is_wrong(
    document: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigDocumentError, match=says):
        ConnectorJobConfig.from_document(document)


def test_failure_summaries_and_outputs_read_from_the_stored_json() -> None:
    stored = {
        "failures": [
            {
                "origin": "source",
                "type": "config_error",
                "message": "bad key",
                "timestamp_ms": 5,
                "retryable": False,
                "from_trace_message": True,
                "metadata": {"connector_command": "read"},
            }
        ],
        "partial_success": False,
    }
    summary = failure_summary(stored)
    (failure,) = summary.failures
    assert (failure.origin, failure.type, failure.retryable) == (
        FailureOrigin.SOURCE,
        FailureType.CONFIG_ERROR,
        False,
    )
    assert summary.partial_success is False
    assert {k: v for k, v in summary.to_document().items() if k != "version"} == stored
    assert failure_summary(None).failures == []

    outcome = ConnectorOutcome.from_document({"exit_code": 0, "check": {"status": "failed", "message": "no"}})
    assert outcome.check is not None and outcome.check.status == "failed" and outcome.catalog is None
    sync = ReplicationOutcome.from_document(
        {"status": "succeeded", "records_committed": 3, "streams": [{"name": "s"}]}
    )
    assert sync.records_committed == 3 and sync.streams[0].name == "s"


def test_a_field_error_names_fields_as_each_surface_does() -> None:
    error = FieldError(
        "{namespace_definition} customformat needs {namespace_format}",
        "namespace_definition",
        "namespace_format",
    )
    assert str(error) == "namespace_definition customformat needs namespace_format"  # the API's words
    assert "--" not in str(error)
    cli = error.phrase({"namespace_definition": "--namespace", "namespace_format": "--namespace-format"})
    assert cli == "--namespace customformat needs --namespace-format"
