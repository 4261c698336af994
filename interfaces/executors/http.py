"""The `http` executor: one HTTP request; a non-2xx answer fails the task."""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

MAX_BODY = 10 * 1024 * 1024  # bytes of a response body kept in the result


class HttpInputs(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: AnyHttpUrl
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    json_body: Any = Field(default=None, alias="json")
    timeout: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)


class HttpStatusError(Exception):
    """The server answered with a status outside 2xx."""


class Http:
    id = "http"
    name = "HTTP request"
    description = (
        "Sends inputs.method (GET) to inputs.url with headers, params and a json body; "
        "returns {status_code, headers, json or text}. A non-2xx status fails the task."
    )
    input_schema = HttpInputs

    async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
        # The runner has validated `inputs` against input_schema and merged in its fields.
        async with httpx.AsyncClient(timeout=inputs["timeout"], follow_redirects=True) as client:
            response = await client.request(
                inputs["method"],
                str(inputs["url"]),
                headers=inputs["headers"],
                params=inputs["params"] or None,  # {} would drop the query in the url
                json=inputs["json_body"] if "json" in inputs else None,
            )
        body = response.content[:MAX_BODY]
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if not response.is_success:
            raise HttpStatusError(f"{response.status_code} {response.reason_phrase}: {text[-500:]}")
        result: dict[str, Any] = {
            "status_code": response.status_code,
            "headers": dict(response.headers),
        }
        if "json" in response.headers.get("content-type", ""):
            try:
                result["json"] = response.json()
            except ValueError:
                result["text"] = text
        else:
            result["text"] = text
        return result
