"""The Litestar application factory: JSON-RPC at POST /tasks and POST /system, SSE for
streamed runs, optional JWT auth, rate limit, body size limit, CORS and OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, post
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.response import ServerSentEvent
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from application.config import Settings
from interfaces.http.auth import caller_of, jwt_auth
from interfaces.http.config import ServerConfig
from interfaces.http.openapi import operation_for
from interfaces.rpc.calls import Call, EventStream
from interfaces.rpc.dispatch import SYSTEM, TASKS, answer
from interfaces.rpc.orchestrator import Orchestrator

JSON = "application/json"


async def _reply(request: Request[Any, Any, State], endpoint: str) -> Response[Any]:
    orchestrator: Orchestrator = request.app.state.orchestrator
    body = await request.body()
    reply = await answer(Call(orchestrator, caller_of(request)), body, endpoint)
    if reply is None:
        return Response(content=b"", status_code=HTTP_204_NO_CONTENT)
    if isinstance(reply, EventStream):
        return ServerSentEvent(
            _sse(reply),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return Response(content=reply, media_type=JSON, status_code=HTTP_200_OK)


async def _sse(stream: EventStream) -> AsyncIterator[str]:
    encode = msgspec.json.encode
    async for event in stream.events:
        yield encode(event).decode()


@post(
    TASKS,
    summary="JSON-RPC 2.0: tasks.* methods",
    description="tasks.create, get, detail, tree, children, list, update, delete, copy, "
    "execute (with wait, use_streaming as text/event-stream, webhook_config), cancel, "
    "running.list|status|count, history and replay. Batches and notifications as "
    "JSON-RPC 2.0 says; errors are HTTP 200 with a JSON-RPC error object.",
    operation_class=operation_for(TASKS),
    status_code=HTTP_200_OK,
)
async def tasks_endpoint(request: Request[Any, Any, State]) -> Response[Any]:
    return await _reply(request, TASKS)


@post(
    SYSTEM,
    summary="JSON-RPC 2.0: system.* methods",
    description="system.health: store, projector lag, running trees and tasks.",
    operation_class=operation_for(SYSTEM),
    status_code=HTTP_200_OK,
    exclude_from_auth=True,
)
async def system_endpoint(request: Request[Any, Any, State]) -> Response[Any]:
    return await _reply(request, SYSTEM)


def create_app(
    settings: Settings | None = None,
    config: ServerConfig | None = None,
    *,
    orchestrator: Orchestrator | None = None,
) -> Litestar:
    """The server. It opens the store, starts the live projector and resumes unfinished
    trees on start-up (through `orchestrator`, made from `settings` if not given)."""
    config = config or ServerConfig.from_env()
    engine = orchestrator or Orchestrator(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await engine.start()
        app.state.orchestrator = engine
        try:
            yield
        finally:
            await engine.close()

    middleware = []
    if config.rate_limit is not None:
        middleware.append(
            RateLimitConfig(rate_limit=config.rate_limit, exclude=["/schema"]).middleware
        )
    auth = jwt_auth(config.jwt_secret) if config.jwt_secret else None
    return Litestar(
        route_handlers=[tasks_endpoint, system_endpoint],
        lifespan=[lifespan],
        middleware=middleware,
        on_app_init=[auth.on_app_init] if auth is not None else None,
        request_max_body_size=config.max_body_bytes,
        cors_config=CORSConfig(allow_origins=list(config.cors_origins))
        if config.cors_origins
        else None,
        openapi_config=OpenAPIConfig(
            title="flowledger",
            version=version("flowledger"),
            description="Event-sourced task trees: JSON-RPC 2.0 over HTTP (see API.md).",
        ),
        debug=False,
        logging_config=None,  # the process configures logging (flowledger serve does)
    )
