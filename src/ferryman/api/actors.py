"""Workspaces, sources and destinations of Airbyte's public API."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from ferryman.api import models
from ferryman.api.context import Context, Limit, Offset, check_workspaces, not_found, page
from ferryman.api.documents import actor_doc, workspace_doc
from ferryman.api.models import ok
from ferryman.api.problems import Problem
from ferryman.store.base import Actor, NotFound

router = APIRouter()
WorkspaceIds = Annotated[list[str] | None, Query(alias="workspaceIds")]


class ActorCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    workspaceId: UUID
    configuration: dict[str, Any]
    definitionId: UUID | None = None


class ActorPatch(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    workspaceId: UUID | None = None
    configuration: dict[str, Any] | None = None


class ActorPut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    configuration: dict[str, Any]


@router.get("/workspaces", tags=["workspaces"], **ok(models.WorkspacePage))
def list_workspaces(
    request: Request,
    context: Context,
    workspaceIds: WorkspaceIds = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> dict[str, Any]:
    found = [context.store.default_workspace()] if check_workspaces(context, workspaceIds) else []
    return page(request, found, limit, offset, workspace_doc)


@router.get("/workspaces/{workspaceId}", tags=["workspaces"], **ok(models.Workspace))
def get_workspace(workspaceId: str, context: Context) -> dict[str, Any]:
    workspace = context.store.default_workspace()
    if workspaceId.lower() != workspace.uuid:
        raise not_found("workspace", workspaceId)
    return workspace_doc(workspace)


def _connector(context: Context, kind: str, body: ActorCreate) -> tuple[str, dict[str, Any]]:
    """The reference the request names (by definitionId or by slug) and the config to store:
    Airbyte keeps the slug out of the stored configuration."""
    config = dict(body.configuration)
    slug = config.pop(f"{kind}Type", None)
    definitions = context.store.list_definitions(kind)
    if body.definitionId is not None:
        found = [d for d in definitions if d.uuid == str(body.definitionId)]
        if not found:
            raise Problem(422, f"no {kind} definition with id {body.definitionId}")
        return found[0].connector, config
    if not slug:
        raise Problem(422, f"name the connector: definitionId, or configuration.{kind}Type (a slug)")
    found = [d for d in definitions if d.slug == slug]
    if not found:
        raise Problem(
            422,
            f"no {kind} definition {slug!r}; define it on the server with: "
            f"ferryman definitions add {slug} pypi:airbyte-{kind}-{slug}==VERSION (or docker:IMAGE:TAG)",
        )
    return found[0].connector, config


def _check_workspace(context: Context, workspace_id: UUID | None) -> None:
    if workspace_id is not None and str(workspace_id) != context.store.default_workspace().uuid:
        raise Problem(422, f"no workspace {workspace_id}: this server has one, see GET /workspaces")


def _actor(context: Context, kind: str, ident: str) -> Actor:
    try:
        return context.store.get_actor_by_uuid(kind, ident)
    except NotFound:
        raise not_found(kind, ident) from None


def _update(
    context: Context, kind: str, ident: str, name: str | None, configuration: Any, merge: bool
) -> dict[str, Any]:
    actor = _actor(context, kind, ident)
    config = None if configuration is None else dict(configuration)
    if config is not None:
        config.pop(f"{kind}Type", None)
    if config is not None and merge:
        updated = context.service.update_actor(actor, name, patch=config)
    else:
        updated = context.service.update_actor(actor, name, config)
    return actor_doc(updated, context.lookups())


def actor_routes(kind: str) -> None:
    plural = f"{kind}s"
    id_name = f"{kind}Id"

    def create(body: ActorCreate, context: Context) -> dict[str, Any]:
        _check_workspace(context, body.workspaceId)
        connector, config = _connector(context, kind, body)
        actor = context.service.create_actor(kind, body.name, connector, config)
        return actor_doc(actor, context.lookups())

    def list_(
        request: Request,
        context: Context,
        workspaceIds: WorkspaceIds = None,
        includeDeleted: bool = False,
        limit: Limit = 20,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        found = context.store.list_actors(kind) if check_workspaces(context, workspaceIds) else []
        lookups = context.lookups()
        return page(request, found, limit, offset, lambda a: actor_doc(a, lookups))

    def get(ident: str, context: Context) -> dict[str, Any]:
        return actor_doc(_actor(context, kind, ident), context.lookups())

    def patch(ident: str, body: ActorPatch, context: Context) -> dict[str, Any]:
        """A partial update, as Airbyte's: the configuration sent is merged into the stored one
        (:func:`merged`), so a client may send only the fields it changes."""
        _check_workspace(context, body.workspaceId)
        return _update(context, kind, ident, body.name, body.configuration, merge=True)

    def put(ident: str, body: ActorPut, context: Context) -> dict[str, Any]:
        """A full replace: the configuration sent is the whole new one."""
        return _update(context, kind, ident, body.name, body.configuration, merge=False)

    def delete(ident: str, context: Context) -> Response:
        actor = _actor(context, kind, ident)
        context.store.delete_actor(kind, actor.id)
        return Response(status_code=204)

    path = f"/{plural}/{{{id_name}}}"
    for function in (get, patch, put, delete):
        function.__name__ = f"{function.__name__}_{kind}"
    one = models.Source if kind == "source" else models.Destination
    many = models.SourcePage if kind == "source" else models.DestinationPage
    router.add_api_route(
        f"/{plural}", create, methods=["POST"], tags=[plural], name=f"create_{kind}", **ok(one)
    )
    router.add_api_route(
        f"/{plural}", list_, methods=["GET"], tags=[plural], name=f"list_{plural}", **ok(many)
    )
    for function, method in ((get, "GET"), (patch, "PATCH"), (put, "PUT"), (delete, "DELETE")):
        options = {"status_code": 204, "response_class": Response} if method == "DELETE" else ok(one)
        router.add_api_route(
            path,
            _renamed(function, id_name),
            methods=[method],
            tags=[plural],
            name=function.__name__,
            **options,
        )


def _renamed(function: Any, id_name: str) -> Any:
    """The route function with its ``ident`` parameter named as the path names it."""
    import inspect

    signature = inspect.signature(function)
    params = [p.replace(name=id_name) if p.name == "ident" else p for p in signature.parameters.values()]

    def route(**kwargs: Any) -> Any:
        kwargs["ident"] = kwargs.pop(id_name)
        return function(**kwargs)

    route.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    route.__name__ = function.__name__
    return route


actor_routes("source")
actor_routes("destination")
