"""The Litestar application factory: JSON-RPC at POST /tasks and POST /system, SSE for
streamed runs, A2A 1.0 at POST / and /.well-known/agent-card.json, optional JWT auth,
rate limit, body size limit, CORS and OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import msgspec
from a2a.server.agent_execution import AgentExecutor
from a2a.types.a2a_pb2 import AgentCard
from litestar import Litestar, Request, Response, get, post
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.response import ServerSentEvent
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT, HTTP_503_SERVICE_UNAVAILABLE

from application.config import Settings
from interfaces.a2a.service import A2AService, load_agent
from interfaces.http.a2a import a2a_endpoint, agent_card_endpoint
from interfaces.http.auth import caller_of, jwt_auth
from interfaces.http.config import ServerConfig
from interfaces.http.openapi import operation_for
from interfaces.rpc.calls import Call, EventStream
from interfaces.rpc.dispatch import SYSTEM, TASKS, answer, call
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


@get(
    "/system/health",
    summary="Health (for load balancers and probes)",
    description="system.health's result: store, projector lag, running trees and tasks. "
    "HTTP 200 when ok, 503 when degraded (the read models are not being kept up).",
    exclude_from_auth=True,
)
async def health_endpoint(request: Request[Any, Any, State]) -> Response[Any]:
    orchestrator: Orchestrator = request.app.state.orchestrator
    report = await call(Call(orchestrator), "system.health", {})
    status = HTTP_200_OK if report["status"] == "ok" else HTTP_503_SERVICE_UNAVAILABLE
    return Response(content=msgspec.json.encode(report), media_type=JSON, status_code=status)


def create_app(
    settings: Settings | None = None,
    config: ServerConfig | None = None,
    *,
    orchestrator: Orchestrator | None = None,
    agent: AgentExecutor | None = None,
    agent_card: AgentCard | None = None,
) -> Litestar:
    """The server. It opens the store, starts the live projector and resumes unfinished
    trees on start-up (through `orchestrator`, made from `settings` if not given).

    A2A: `agent` is any a2a-sdk AgentExecutor put in front (the task-tree agent if None),
    described by `agent_card` (flowledger's card if None; its JSON-RPC URL is set per
    request to the URL the client reached, or FLOWLEDGER_PUBLIC_URL)."""
    config = config or ServerConfig.from_env()
    engine = orchestrator or Orchestrator(settings)
    engine.callbacks = config.callbacks
    if agent is None and config.a2a_agent is not None:
        agent = load_agent(config.a2a_agent)
    a2a = A2AService(engine, agent, agent_card, auth=config.jwt_secret is not None)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await engine.start()
        app.state.orchestrator = engine
        app.state.a2a = a2a
        app.state.public_url = config.public_url
        try:
            await a2a.start()
            yield
        finally:
            await a2a.close()
            await engine.close()

    middleware = []
    if config.rate_limit is not None:
        middleware.append(
            RateLimitConfig(rate_limit=config.rate_limit, exclude=["/schema"]).middleware
        )
    auth = jwt_auth(config.jwt_secret) if config.jwt_secret else None
    return Litestar(
        route_handlers=[
            tasks_endpoint,
            system_endpoint,
            health_endpoint,
            a2a_endpoint,
            agent_card_endpoint,
        ],
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
