"""A2A push notifications: each task event is POSTed to every config registered for the
task, in order per config, retried with backoff. Delivery runs beside the task, never in its
way: send_notification only queues, and a receiver that is down delays only its own queue."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from a2a.server.tasks import (
    PushNotificationConfigStore,
    PushNotificationEvent,
    PushNotificationSender,
)
from a2a.types.a2a_pb2 import TaskPushNotificationConfig
from a2a.utils.proto_utils import to_stream_response
from google.protobuf.json_format import MessageToDict

from interfaces.rpc.webhooks import retryable

log = logging.getLogger("flowledger.a2a.push")

Delivery = tuple[TaskPushNotificationConfig, dict[str, Any]]
Key = tuple[str, str]  # (task id, config id): one ordered queue each

TIMEOUT_S = 10.0  # each attempt, when we make the client


def push_headers(config: TaskPushNotificationConfig) -> dict[str, str]:
    """The SDK's headers: the config's token, and its credentials as Authorization."""
    headers: dict[str, str] = {}
    if config.token:
        headers["X-A2A-Notification-Token"] = config.token
    auth = config.authentication
    if auth.scheme and auth.credentials:
        headers["Authorization"] = f"{auth.scheme} {auth.credentials}"
    elif auth.scheme:
        log.warning("push config %s has a scheme but no credentials: no Authorization", config.id)
    return headers


class RetryingPushSender(PushNotificationSender):
    """Queues each event per (task, config) and delivers it from a background task, retrying
    network errors, 5xx, 408, 425 and 429 with exponential backoff; a 2xx is done, another
    4xx is not retried. A queue's task ends when the queue is empty. At most `max_queued`
    events wait per queue (beyond that, new ones are dropped and logged)."""

    def __init__(
        self,
        config_store: PushNotificationConfigStore,
        *,
        client: httpx.AsyncClient | None = None,
        max_retries: int = 5,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        url_validator: Callable[[str], Awaitable[bool]] | None = None,
        max_queued: int = 1000,
    ) -> None:
        self._store = config_store
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT_S)
        self._max_retries = max_retries
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._url_validator = url_validator
        self._max_queued = max_queued
        self._queues: dict[Key, deque[Delivery]] = {}
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._closed = False

    @property
    def queues(self) -> int:
        """Queues with deliveries waiting or under way (each has its own task)."""
        return len(self._workers)

    async def send_notification(self, task_id: str, event: PushNotificationEvent) -> None:
        """Queue `event` for every config of the task; never waits for a delivery, never
        raises."""
        try:
            await self._send(task_id, event)
        except Exception:
            log.exception("push notifications for task %s not queued", task_id)

    async def _send(self, task_id: str, event: PushNotificationEvent) -> None:
        if self._closed:
            log.warning("push sender closed: an event of task %s is not sent", task_id)
            return
        response = to_stream_response(event)  # a copy, as the event is now
        configs = await self._store.get_info_for_dispatch(task_id)
        if not configs:
            return
        payload: dict[str, Any] = MessageToDict(response)
        for config in configs:
            if await self._accepts(task_id, config):
                self._enqueue(task_id, config, payload)

    async def _accepts(self, task_id: str, config: TaskPushNotificationConfig) -> bool:
        if self._url_validator is None:
            return True
        try:
            if await self._url_validator(config.url):
                return True
        except Exception:
            log.exception("push URL check of %s failed: treated as rejected", config.url)
            return False
        log.warning("push URL %s of task %s rejected: not sent", config.url, task_id)
        return False

    def _enqueue(self, task_id: str, config: TaskPushNotificationConfig, payload: Any) -> None:
        key = (task_id, config.id)
        queue = self._queues.setdefault(key, deque())
        if len(queue) >= self._max_queued:
            log.error("push queue of task %s, config %s is full: event dropped", *key)
            return
        queue.append((config, payload))
        if key not in self._workers:
            self._workers[key] = asyncio.get_running_loop().create_task(self._serve(key, queue))

    async def _serve(self, key: Key, queue: deque[Delivery]) -> None:
        """Deliver the queue in order; end (and forget the queue) once it is empty."""
        try:
            while queue:
                config, payload = queue.popleft()
                try:
                    await self._deliver(key[0], config, payload)
                except Exception:
                    log.exception("push to %s for task %s failed", config.url, key[0])
        finally:
            # no await since the queue was seen empty: a later event starts a new task
            self._workers.pop(key, None)
            self._queues.pop(key, None)

    async def _deliver(
        self, task_id: str, config: TaskPushNotificationConfig, payload: dict[str, Any]
    ) -> None:
        headers = push_headers(config)
        delay = self._first_backoff_s
        for attempt in range(1, self._max_retries + 2):
            if attempt > 1:
                await asyncio.sleep(delay)
                delay = min(self._max_backoff_s, delay * 2)
            if await self._post_once(config.url, payload, headers, attempt):
                return
        log.error(
            "push to %s for task %s: gave up after %d attempts",
            config.url,
            task_id,
            self._max_retries + 1,
        )

    async def _post_once(
        self, url: str, payload: dict[str, Any], headers: dict[str, str], attempt: int
    ) -> bool:
        """One attempt; True when it is over (delivered, or refused for good)."""
        try:
            response = await self._client.post(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("push to %s: %s (attempt %d)", url, str(exc) or type(exc).__name__, attempt)
            return False
        if response.is_success:
            return True
        status = response.status_code
        log.warning("push to %s answered %d (attempt %d)", url, status, attempt)
        if retryable(status):
            return False
        log.error("push to %s refused with %d: not retried", url, status)
        return True

    async def join(self) -> None:
        """Wait until every queue is delivered (or given up on)."""
        while self._workers:
            await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def aclose(self, grace_s: float = 5.0) -> None:
        """Stop taking events, let the queues finish for up to `grace_s`, cancel what is
        left, and close the client if it is ours."""
        self._closed = True
        workers = list(self._workers.values())
        if workers:
            _, late = await asyncio.wait(workers, timeout=max(grace_s, 0))
            for worker in late:
                worker.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("push sender closed with %d queues undelivered", len(late))
            self._workers.clear()  # a task cancelled before it ran never cleaned up
            self._queues.clear()
        if self._owns_client:
            await self._client.aclose()
