"""What a job runs: its config snapshot, typed and versioned (one structure in, as a Temporal
activity wants), and the documents it is stored as.

A job's config is taken when it is enqueued and never changes: later edits of a connection or an
actor do not change what a queued job runs. The store keeps it as JSON (``jobs.config``); these
structures are read from and written to that JSON at the store's edge, so the engines, the
service and the surfaces read attributes, never string keys. A document without ``version`` was
written before versions were kept, and is version 1; unknown keys are ignored, so an older
Ferryman reads what a newer one wrote as far as it can.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ferryman.errors import UserInputError

# The version this Ferryman writes; a document of a later version is refused, not misread.
VERSION = 1

T = TypeVar("T", bound="Versioned")


class ConfigDocumentError(UserInputError):
    """A stored document that is not a config (or outcome) of the kind asked for: a job with
    such a config cannot work, so it fails as a config error and is not retried."""


class Versioned(msgspec.Struct, frozen=True, kw_only=True):
    version: int = VERSION

    def to_document(self) -> dict[str, Any]:
        """The JSON object the store keeps (None fields included, so the shape is stable)."""
        document: dict[str, Any] = msgspec.to_builtins(self)
        return document

    @classmethod
    def from_document(cls: type[T], document: Any) -> T:
        try:
            parsed = msgspec.convert(document, type=cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigDocumentError(f"not a {cls.__name__} document: {exc}") from None
        if parsed.version > VERSION:
            raise ConfigDocumentError(
                f"{cls.__name__} version {parsed.version} was written by a newer ferryman "
                f"(this one reads up to {VERSION})"
            )
        return parsed


class ActorSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What a job keeps of a source or destination."""

    connector: str  # a connector reference: pypi:..., docker:..., exec:..., builtin:...
    config: dict[str, Any] | None = None  # None: a spec job, which has no config
    actor_id: int | None = None  # None: a connector not stored as an actor (a spec job)
    resources: dict[str, str] | None = None  # container limits of a docker: connector
    spec: dict[str, Any] | None = None  # the spec masking goes by, when known


class ConnectorJobConfig(Versioned, frozen=True, kw_only=True):
    """A spec, check or discover job: one connector, with its config except for spec.

    Stored flat (``{"connector": ..., "config": ..., "actor_id": ...}``) as it always was: the
    fields of an :class:`ActorSnapshot` (msgspec structs take one base only)."""

    connector: str
    config: dict[str, Any] | None = None
    actor_id: int | None = None
    resources: dict[str, str] | None = None
    spec: dict[str, Any] | None = None

    @classmethod
    def of(cls, actor: ActorSnapshot) -> ConnectorJobConfig:
        return cls(
            connector=actor.connector,
            config=actor.config,
            actor_id=actor.actor_id,
            resources=actor.resources,
            spec=actor.spec,
        )

    @property
    def actor(self) -> ActorSnapshot:
        return ActorSnapshot(
            connector=self.connector,
            config=self.config,
            actor_id=self.actor_id,
            resources=self.resources,
            spec=self.spec,
        )


class NamespaceConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where the destination writes each stream (Airbyte's namespace definition and prefix)."""

    definition: str = "source"  # source | destination | customformat
    format: str | None = None  # for customformat, e.g. raw_${SOURCE_NAMESPACE}
    prefix: str = ""


class ReplicationConfig(Versioned, frozen=True, kw_only=True):
    """A sync or reset job: both sides, the configured catalog and the namespace mapping."""

    connection_id: int
    source: ActorSnapshot
    destination: ActorSnapshot
    catalog: dict[str, Any]  # the configured catalog, in source names
    namespace: NamespaceConfig = NamespaceConfig()


class ReplicationEnds(Versioned, frozen=True, kw_only=True):
    """Both sides of a sync's or reset's config, read from its document without its catalog
    (other keys are ignored): all that holds its secrets, so that masking a job of thousands of
    streams neither reads nor converts them."""

    source: ActorSnapshot
    destination: ActorSnapshot


def snapshots(config: ConnectorJobConfig | ReplicationConfig | ReplicationEnds) -> list[ActorSnapshot]:
    """The actor snapshots of a job's config: its own (spec, check, discover), or both sides'."""
    if isinstance(config, ReplicationConfig | ReplicationEnds):
        return [config.source, config.destination]
    return [config.actor]
