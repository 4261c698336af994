"""Webhook delivery: POST each stream event of a run to the configured URL, in order, with
retries and backoff. It runs beside the tree, never in its way: a receiver that is down
delays only its own deliveries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from interfaces.rpc.callbacks import CallbackPolicy
from interfaces.rpc.params import WebhookConfig

log = logging.getLogger("flowledger.webhooks")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


def retryable(status: int) -> bool:
    """Server errors, throttling and timeouts are worth another try; other 4xx are not."""
    return status >= 500 or status in (408, 425, 429)


async def post_event(
    client: httpx.AsyncClient, config: WebhookConfig, event: dict[str, Any]
) -> bool:
    """Deliver one event; True once the receiver answered 2xx."""
    delay = FIRST_BACKOFF_S
    for attempt in range(config.max_retries + 1):
        if attempt:
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF_S, delay * 2)
        try:
            response = await client.request(
                config.method,
                config.url,
                json=event,
                headers=config.headers,
                timeout=config.timeout,
            )
        except httpx.HTTPError as exc:
            log.warning("webhook %s: %s (attempt %d)", config.url, exc, attempt + 1)
            continue
        if response.is_success:
            return True
        log.warning(
            "webhook %s answered %d (attempt %d)", config.url, response.status_code, attempt + 1
        )
        if not retryable(response.status_code):
            return False
    return False


async def deliver(
    events: AsyncIterator[dict[str, Any]],
    config: WebhookConfig,
    root_task_id: str,
    policy: CallbackPolicy | None = None,
) -> None:
    """POST every event of `events` (ending with the `final` one); an event that cannot be
    delivered after its retries is logged and skipped, so later ones still go out. Each
    event's URL is checked against `policy` first, with its host resolved."""
    policy = policy or CallbackPolicy()
    async with httpx.AsyncClient(follow_redirects=False) as client:
        async for event in events:
            payload = {"protocol": "jsonrpc", "root_task_id": root_task_id, **event}
            if event["type"] == "final":
                payload["final"] = True
            refused = await policy.refuses_resolved(config.url)
            if refused is not None:
                log.error("webhook %s not called: %s", config.url, refused)
                continue
            if not await post_event(client, config, payload):
                log.error("webhook %s: gave up on a %s event", config.url, event["type"])
