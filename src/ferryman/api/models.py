"""Response models: what ``/openapi.json`` promises each route answers (and what Schemathesis
checks every response against). Fields a route may leave out are optional: nulls are omitted,
never sent. Extra fields are allowed, as Airbyte's clients ignore what they do not know."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JobStatusName = Literal["pending", "running", "incomplete", "failed", "succeeded", "cancelled"]


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ProblemDetail(Open):
    """An error (RFC 7807), as ``application/problem+json``."""

    status: int
    type: str
    title: str
    detail: str
    data: dict[str, Any] | None = None


# -- the public API (/v1) ------------------------------------------------------------------------


class Workspace(Open):
    workspaceId: str
    name: str
    dataResidency: str
    notifications: dict[str, Any]


class Actor(Open):
    name: str
    definitionId: str
    workspaceId: str
    configuration: dict[str, Any]
    createdAt: int


class Source(Actor):
    sourceId: str
    sourceType: str


class Destination(Actor):
    destinationId: str
    destinationType: str


class StreamConfiguration(Open):
    name: str
    namespace: str | None = None
    syncMode: str
    cursorField: list[str] | None = None
    primaryKey: list[list[str]] | None = None


class Connection(Open):
    connectionId: str
    name: str
    sourceId: str
    destinationId: str
    workspaceId: str
    status: str
    statusReason: str | None = None
    schedule: dict[str, Any]
    nextSync: int | None = None
    configurations: dict[str, list[StreamConfiguration]]
    createdAt: int
    tags: list[Any]
    namespaceDefinition: str | None = None
    namespaceFormat: str | None = None
    prefix: str | None = None


class StreamProperties(Open):
    streamName: str
    syncModes: list[str]


class Job(Open):
    jobId: int
    status: JobStatusName
    jobType: Literal["sync", "reset"]
    startTime: str
    connectionId: str
    lastUpdatedAt: str | None = None
    duration: str | None = None
    rowsSynced: int | None = None
    bytesSynced: int | None = None


class Page(Open):
    next: str | None = None
    previous: str | None = None


class WorkspacePage(Page):
    data: list[Workspace]


class SourcePage(Page):
    data: list[Source]


class DestinationPage(Page):
    data: list[Destination]


class ConnectionPage(Page):
    data: list[Connection]


class JobPage(Page):
    data: list[Job]


class Token(Open):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


# -- Ferryman's own (/v1/ferryman) ---------------------------------------------------------------


class StreamStats(Open):
    streamName: str
    streamNamespace: str | None = None
    stats: dict[str, int]


class Failure(Open):
    failureOrigin: str | None = None
    failureType: str | None = None
    externalMessage: str | None = None
    internalMessage: str | None = None
    stacktrace: str | None = None
    retryable: bool | None = None
    timestamp: int | None = None


class FailureSummary(Open):
    failures: list[Failure]
    partialSuccess: bool | None = None


class Attempt(Open):
    attemptNumber: int
    status: Literal["running", "failed", "succeeded"]
    createdAt: str
    updatedAt: str
    endedAt: str | None = None
    recordsSynced: int | None = None
    bytesSynced: int | None = None
    totalStats: dict[str, int]
    streamStats: list[StreamStats]
    failureSummary: FailureSummary | None = None


class AttemptList(Open):
    jobId: int
    data: list[Attempt]


class FerrymanJob(Open):
    jobId: int
    jobType: Literal["spec", "check", "discover", "sync", "reset"]
    status: JobStatusName
    createdAt: str
    updatedAt: str
    startedAt: str | None = None
    cancelRequested: bool
    attempts: int
    connectionId: str | None = None
    sourceId: str | None = None
    destinationId: str | None = None
    definitionId: str | None = None
    output: dict[str, Any] | None = None


class FerrymanJobPage(Page):
    data: list[FerrymanJob]


class LogTail(Open):
    jobId: int
    attemptNumber: int
    lines: list[str]


class ConnectionState(Open):
    connectionId: str
    state: list[dict[str, Any]]


class Definition(Open):
    definitionId: str
    kind: Literal["source", "destination"]
    slug: str
    connector: str
    builtin: bool


class DefinitionList(Open):
    data: list[Definition]


# -- the config API (/api/v1) --------------------------------------------------------------------


class ConfigHealth(Open):
    available: bool


class ConfigWorkspaceRead(Open):
    workspaceId: str
    customerId: str
    name: str
    slug: str
    initialSetupComplete: bool
    organizationId: str


class ConfigWorkspaceList(Open):
    workspaces: list[ConfigWorkspaceRead]


class ConfigStream(Open):
    stream: dict[str, Any]
    config: dict[str, Any]


class ConfigCatalog(Open):
    streams: list[ConfigStream]


class ConfigConnectionRead(Open):
    connectionId: str
    name: str
    sourceId: str
    destinationId: str
    syncCatalog: ConfigCatalog
    status: str
    breakingChange: bool
    prefix: str | None = None


class ConfigConnectionList(Open):
    connections: list[ConfigConnectionRead]


class ConfigJobRead(Open):
    id: int
    configType: str
    configId: str
    createdAt: int
    updatedAt: int
    startedAt: int | None = None
    status: JobStatusName
    aggregatedStats: dict[str, int] | None = None


class ConfigAttemptRead(Open):
    id: int
    status: Literal["running", "failed", "succeeded"]
    createdAt: int
    updatedAt: int
    endedAt: int | None = None
    recordsSynced: int | None = None
    bytesSynced: int | None = None
    totalStats: dict[str, int]
    streamStats: list[StreamStats]
    failureSummary: FailureSummary | None = None


class ConfigLogs(Open):
    logLines: list[str]


class ConfigAttemptInfo(Open):
    attempt: ConfigAttemptRead
    logs: ConfigLogs | None = None


class ConfigJobInfo(Open):
    job: ConfigJobRead
    attempts: list[ConfigAttemptInfo]


class ConfigJobWithAttempts(Open):
    job: ConfigJobRead
    attempts: list[ConfigAttemptRead]


class ConfigJobList(Open):
    jobs: list[ConfigJobWithAttempts]
    totalJobCount: int


class ConfigOperations(Open):
    operations: list[Any]


class ConfigActorRead(Open):
    workspaceId: str
    name: str
    connectionConfiguration: dict[str, Any]
    createdAt: int


class ConfigSourceRead(ConfigActorRead):
    sourceId: str
    sourceDefinitionId: str
    sourceName: str


class ConfigDestinationRead(ConfigActorRead):
    destinationId: str
    destinationDefinitionId: str
    destinationName: str


def ok(model: Any, status: int = 200) -> dict[str, Any]:
    """Route options that declare ``model`` as the success body without FastAPI re-validating
    (and re-serialising) the document a route built: it is already in its final form."""
    return {"response_model": None, "responses": {status: {"model": model}}}


class Notification(Open):
    notificationId: str
    url: str  # scheme and host only: the rest may hold a token
    format: Literal["slack", "json"]
    events: list[Literal["failure", "success", "cancelled", "disabled"]]
    workspaceId: str
    connectionId: str | None = None
    createdAt: str


class NotificationPage(Page):
    data: list[Notification]
