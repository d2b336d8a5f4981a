"""What is secret in stored actors and jobs, for every surface (CLI now, HTTP API later).

The rules are in :mod:`ferryman.secrets`; this module applies them to what the store holds. It
goes by the spec kept on each actor (and in each job's snapshot of it), so showing an actor, a
job or a log never starts a connector: a connector whose ``spec`` hangs, or no longer works,
cannot hang or unmask a display command. An actor whose spec is not known yet (created before
specs were kept, or whose ``spec`` failed) is masked by field names until a job of its, or an
update of its config, fetches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferryman.errors import UserInputError
from ferryman.jobs.configs import (
    ConfigDocumentError,
    ConnectorJobConfig,
    ReplicationConfig,
    ReplicationEnds,
    snapshots,
)
from ferryman.secrets import MASK, SecretRules, longest_first, mask_config, secret_values

if TYPE_CHECKING:  # the store package is heavy (SQLAlchemy, Alembic): not at CLI start-up
    from ferryman.store.base import Actor, Job


def actor_rules(actor: Actor) -> SecretRules:
    return SecretRules.of(actor.spec, actor.config)


def masked_config(actor: Actor) -> Any:
    """The actor's config with its secret fields masked."""
    return mask_config(actor.config, actor_rules(actor))


def actor_secrets(*actors: Actor) -> list[str]:
    """The values of the actors' configs to mask wherever they occur in text."""
    return longest_first(v for actor in actors for v in secret_values(actor.config, actor_rules(actor)))


def job_config(job: Job) -> ConnectorJobConfig | ReplicationConfig:
    """The job's typed config snapshot."""
    if job.type.is_replication:
        return ReplicationConfig.from_document(job.config)
    return ConnectorJobConfig.from_document(job.config)


def _ends(job: Job) -> ConnectorJobConfig | ReplicationEnds:
    if job.type.is_replication:
        return ReplicationEnds.from_document(job.config)
    return ConnectorJobConfig.from_document(job.config)


def job_secrets(job: Job, actors: list[Actor]) -> list[str]:
    """The values of a job's configs to mask in text. Each config goes by the spec in the job's
    snapshot, else by the one its actor (among ``actors``) has kept since. The actor's config as
    stored now is masked too: a connector that updated it (CONTROL) may have written the new
    secret before the worker read the update. Only the configs are read, never a sync's catalog:
    ``job`` may come from ``get_job(id, catalog=False)``."""
    kept: dict[tuple[Any, Any], dict[str, Any] | None] = {(a.id, a.connector): a.spec for a in actors}
    current: dict[tuple[Any, Any], Actor] = {(a.id, a.connector): a for a in actors}
    found: list[str] = []
    try:
        taken = snapshots(_ends(job))
    except ConfigDocumentError:  # a config that never ran: mask whatever it holds by names alone
        config = {key: value for key, value in job.config.items() if key != "catalog"}
        return longest_first(secret_values(config, SecretRules.of(None, config)))
    for snapshot in taken:
        if snapshot.config is None:
            continue
        spec = snapshot.spec or kept.get((snapshot.actor_id, snapshot.connector))
        found += secret_values(snapshot.config, SecretRules.of(spec, snapshot.config))
        actor = current.get((snapshot.actor_id, snapshot.connector))
        if actor is not None and actor.config != snapshot.config:
            found += secret_values(actor.config, SecretRules.of(spec, actor.config))
    return longest_first(found)


def restore_masked(config: Any, actor: Actor) -> Any:
    """A config a client sent back: each value still ``**********`` takes the stored value at
    the same place (as Airbyte's API does), so a client that edits one field keeps the secrets.
    An array item stands for the stored item shown exactly like it (so removing, adding or
    moving items keeps each item's own secret), else, in an array that kept its length, for the
    one at its place. A ``**********`` where no stored value can be told (an option switched, a
    new item, an item edited while the array changed length) is refused: stored as it is, it
    would silently replace a credential with the mask, or with another item's credential."""
    return _restore(config, actor.config, masked_config(actor), "configuration")


def _restore(new: Any, old: Any, shown: Any, path: str) -> Any:
    """``shown``: ``old`` as the surfaces show it (masked), to tell which stored item is which."""
    if new == MASK:
        if old is None:
            raise UserInputError(
                f"{path} is {MASK} (a masked secret) but no value is stored there to keep: "
                "send the value itself"
            )
        return old
    if isinstance(new, dict):
        previous = old if isinstance(old, dict) else {}
        seen = shown if isinstance(shown, dict) else {}
        return {
            key: _restore(value, previous.get(key), seen.get(key), f"{path}.{key}")
            for key, value in new.items()
        }
    if isinstance(new, list):
        before = old if isinstance(old, list) else []
        views = shown if isinstance(shown, list) and len(shown) == len(before) else [MASK] * len(before)
        picks = [_stored_item(value, i, views, len(new)) for i, value in enumerate(new)]
        return [
            _restore(value, None, None, f"{path}[{i}]")
            if j is None
            else _restore(value, before[j], views[j], f"{path}[{i}]")
            for i, (value, j) in enumerate(zip(new, picks, strict=True))
        ]
    return new


def _stored_item(item: Any, i: int, shown: list[Any], count: int) -> int | None:
    """Which stored item (its index) a sent-back array item stands for, None if none can be told."""
    alike = [j for j, view in enumerate(shown) if view == item]
    if count == len(shown) and i < len(shown) and (i in alike or not alike):
        return i  # the array kept its length: in place (edited, maybe)
    if len(alike) == 1:
        return alike[0]  # moved, or others added or removed around it
    return None


def holds_mask(value: Any) -> bool:
    if isinstance(value, str):
        return MASK in value
    if isinstance(value, dict):
        return any(holds_mask(v) for v in value.values())
    return isinstance(value, list) and any(holds_mask(v) for v in value)


def unmask_sent_back(new: Any, old: Any, shown: Any, path: str) -> Any:
    """A document sent back (a connection's state): a string that is as it was shown (masked)
    takes the stored value at the same place; a mask anywhere else would store the mask in place
    of a credential."""
    if isinstance(new, str):
        if new == shown and old is not None:
            return old
        if MASK in new:
            raise UserInputError(
                f"{path} holds {MASK} (a masked secret) where the stored state shows no such value: "
                "send the value itself"
            )
        return new
    if isinstance(new, dict):
        keyed, seen = (old if isinstance(old, dict) else {}), (shown if isinstance(shown, dict) else {})
        return {k: unmask_sent_back(v, keyed.get(k), seen.get(k), f"{path}.{k}") for k, v in new.items()}
    if isinstance(new, list):
        olds, views = (old if isinstance(old, list) else []), (shown if isinstance(shown, list) else [])
        return [
            unmask_sent_back(
                v, olds[i] if i < len(olds) else None, views[i] if i < len(views) else None, f"{path}[{i}]"
            )
            for i, v in enumerate(new)
        ]
    return new
