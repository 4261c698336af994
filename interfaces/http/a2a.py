"""A2A 1.0 on Litestar: the agent card at /.well-known/agent-card.json and JSON-RPC at
POST / (SSE for the streaming methods). The protocol itself is in interfaces/a2a/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from a2a.extensions.common import HTTP_EXTENSION_HEADER, get_requested_extensions
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from a2a.utils.errors import InvalidRequestError
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK, HTTP_304_NOT_MODIFIED

from interfaces.a2a.card import card_json, etag_matches, served
from interfaces.a2a.jsonrpc import Reply, answer, error_reply
from interfaces.a2a.service import A2AService, call_context
from interfaces.http.auth import caller_of

JSON = "application/json"
CARD_CACHE = "public, max-age=300"


def _service(request: Request[Any, Any, State]) -> A2AService:
    service: A2AService = request.app.state.a2a
    return service


def _base_url(request: Request[Any, Any, State]) -> str:
    public: str | None = request.app.state.public_url
    return public if public is not None else str(request.base_url).rstrip("/") + "/"


@get(
    AGENT_CARD_WELL_KNOWN_PATH,
    summary="A2A agent card",
    description="The A2A 1.0 agent card: the JSON-RPC interface, capabilities and skills.",
    exclude_from_auth=True,
    media_type=JSON,
)
async def agent_card_endpoint(request: Request[Any, Any, State]) -> Response[Any]:
    body, etag = card_json(served(_service(request).card, _base_url(request)))
    headers = {"ETag": etag, "Cache-Control": CARD_CACHE}
    wanted = request.headers.get("if-none-match")
    if wanted and etag_matches(wanted, etag):
        return Response(content=b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content=msgspec.json.encode(body), media_type=JSON, headers=headers)


@post(
    ["/"],
    summary="A2A 1.0 JSON-RPC",
    description="SendMessage, SendStreamingMessage, GetTask, ListTasks, CancelTask, "
    "SubscribeToTask, the TaskPushNotificationConfig methods and GetExtendedAgentCard. "
    "Send the header A2A-Version: 1.0.",
    status_code=HTTP_200_OK,
)
async def a2a_endpoint(request: Request[Any, Any, State]) -> Response[Any]:
    try:
        body = await request.body()
    except HTTPException as exc:
        if exc.status_code != 413:
            raise
        reply = error_reply(None, InvalidRequestError(message="Payload too large"))
        return Response(content=msgspec.json.encode(reply), media_type=JSON)
    context = call_context(caller_of(request), headers=dict(request.headers))
    context.requested_extensions = get_requested_extensions(
        request.headers.getall(HTTP_EXTENSION_HEADER, [])
    )
    result = await answer(_service(request).handler, body, context)
    if isinstance(result, dict):
        return Response(content=msgspec.json.encode(result), media_type=JSON)
    return ServerSentEvent(_sse(result), headers={"Cache-Control": "no-cache"})


async def _sse(replies: AsyncIterator[Reply]) -> AsyncIterator[ServerSentEventMessage]:
    async for reply in replies:
        event = "error" if "error" in reply else None
        yield ServerSentEventMessage(data=msgspec.json.encode(reply).decode(), event=event)
