"""A2A push notifications to a real HTTP receiver on 127.0.0.1: retried until accepted, in
order per config, with the config's token and credentials; a 4xx is not retried; a receiver
that hangs or is down holds up neither the task (send_notification) nor other receivers."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from a2a.server.context import ServerCallContext
from a2a.server.tasks import PushNotificationConfigStore
from a2a.types.a2a_pb2 import (
    AuthenticationInfo,
    Message,
    Part,
    Role,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.proto_utils import to_stream_response
from google.protobuf.json_format import MessageToDict

from application.config import Settings
from interfaces.a2a.push import RetryingPushSender
from interfaces.a2a.service import NamedUser
from interfaces.a2a.store import SqlPushConfigStore, create_a2a_engine

R = TypeVar("R")
WAIT_S = 30  # an upper bound for an event that is due at once; never a synchronisation
HANG = -1  # an answer: hold the request until the receiver closes
DROP = 0  # an answer: close the connection without answering


ALICE, BOB = ServerCallContext(user=NamedUser("alice")), ServerCallContext(user=NamedUser("bob"))


@dataclass
class Hit:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    status: int


@dataclass
class Receiver:
    """Answers its first requests with `answers` (a status, HANG or DROP), then 200."""

    answers: list[int]
    url: str = ""
    hits: list[Hit] = field(default_factory=list)  # every request, answered or not
    arrived: asyncio.Queue[Hit] = field(default_factory=asyncio.Queue)
    accepted: asyncio.Queue[Hit] = field(default_factory=asyncio.Queue)  # answered 2xx
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hit = await self._read(reader)
            self.hits.append(hit)
            self.arrived.put_nowait(hit)
            if hit.status == HANG:
                await self.closing.wait()
            elif hit.status != DROP:
                if 200 <= hit.status < 300:
                    self.accepted.put_nowait(hit)
                head = f"HTTP/1.1 {hit.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                writer.write(head.encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> Hit:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        headers = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = json.loads(await reader.readexactly(int(headers["content-length"])))
        status = self.answers.pop(0) if self.answers else 200
        return Hit(path, headers, body, status)

    async def next_accepted(self) -> Hit:
        return await asyncio.wait_for(self.accepted.get(), WAIT_S)

    async def next_arrived(self) -> Hit:
        return await asyncio.wait_for(self.arrived.get(), WAIT_S)


@asynccontextmanager
async def receiver(*answers: int) -> AsyncIterator[Receiver]:
    box = Receiver(list(answers))
    server = await asyncio.start_server(box.handle, "127.0.0.1", 0)
    box.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    try:
        yield box
    finally:
        box.closing.set()
        server.close()
        await server.wait_closed()


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


def event(
    task_id: str, step: int, state: int = TaskState.TASK_STATE_WORKING
) -> TaskStatusUpdateEvent:
    status = TaskStatus(
        state=state,
        message=Message(
            message_id=f"m-{step}", role=Role.ROLE_AGENT, parts=[Part(text=f"step {step}")]
        ),
    )
    return TaskStatusUpdateEvent(task_id=task_id, context_id="ctx-1", status=status)


def body(ev: TaskStatusUpdateEvent) -> dict[str, Any]:
    payload: dict[str, Any] = MessageToDict(to_stream_response(ev))
    return payload


def config(url: str, config_id: str = "", **fields: Any) -> TaskPushNotificationConfig:
    return TaskPushNotificationConfig(id=config_id, url=url, **fields)


@pytest.fixture
def store(sqlite_settings: Settings) -> Iterator[SqlPushConfigStore]:
    engine = create_a2a_engine(sqlite_settings)
    try:
        yield SqlPushConfigStore(engine)
    finally:
        engine.dispose()


def run(main: Callable[[], Awaitable[R]]) -> R:
    async def go() -> R:
        return await main()

    return asyncio.run(go())


def quick(store: PushNotificationConfigStore, **options: Any) -> RetryingPushSender:
    return RetryingPushSender(store, first_backoff_s=0.001, max_backoff_s=0.001, **options)


def test_retried_until_accepted_in_order_with_token_and_credentials(
    store: SqlPushConfigStore,
) -> None:
    events = [event("t-1", 1), event("t-1", 2), event("t-1", 3, TaskState.TASK_STATE_COMPLETED)]

    async def main() -> None:
        async with receiver(503, 503) as hook:
            auth = AuthenticationInfo(scheme="Bearer", credentials="s3cret")
            await store.set_info("t-1", config(hook.url, token="tok", authentication=auth), ALICE)
            sender = quick(store)
            for ev in events:
                await sender.send_notification("t-1", ev)
            accepted = [await hook.next_accepted() for _ in events]
            await sender.join()
            assert sender.queues == 0  # its task ended with the queue
            await sender.aclose()

        assert [h.body for h in accepted] == [body(ev) for ev in events]
        assert [h.body for h in hook.hits] == [body(events[0])] * 3 + [
            body(ev) for ev in events[1:]
        ]
        assert [h.status for h in hook.hits] == [503, 503, 200, 200, 200]
        for hit in hook.hits:
            assert hit.path == "/hook"
            assert hit.headers["x-a2a-notification-token"] == "tok"
            assert hit.headers["authorization"] == "Bearer s3cret"
            assert hit.headers["content-type"] == "application/json"
        assert accepted[0].body["statusUpdate"]["status"]["message"]["parts"] == [
            {"text": "step 1"}
        ]

    run(main)


def test_no_token_no_credentials_no_headers(store: SqlPushConfigStore) -> None:
    async def main() -> Hit:
        async with receiver() as hook:
            await store.set_info("t-1", config(hook.url), ALICE)
            sender = quick(store)
            await sender.send_notification("t-1", event("t-1", 1))
            hit = await hook.next_accepted()
            await sender.aclose()
            return hit

    hit = run(main)
    assert "x-a2a-notification-token" not in hit.headers
    assert "authorization" not in hit.headers


def test_a_4xx_is_not_retried(store: SqlPushConfigStore, caplog: pytest.LogCaptureFixture) -> None:
    first, second = event("t-1", 1), event("t-1", 2)

    async def main() -> Receiver:
        async with receiver(400) as hook:
            await store.set_info("t-1", config(hook.url), ALICE)
            sender = quick(store)
            await sender.send_notification("t-1", first)
            await sender.send_notification("t-1", second)
            assert (await hook.next_accepted()).body == body(second)
            await sender.aclose()
            return hook

    hook = run(main)
    assert [(h.body, h.status) for h in hook.hits] == [(body(first), 400), (body(second), 200)]
    assert "refused with 400" in caplog.text


def test_gives_up_after_max_retries_and_moves_on(
    store: SqlPushConfigStore, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = event("t-1", 1), event("t-1", 2)

    async def main() -> Receiver:
        async with receiver(DROP, 503, 429) as hook:  # a network error, then two retryable
            await store.set_info("t-1", config(hook.url), ALICE)
            sender = quick(store, max_retries=2)
            await sender.send_notification("t-1", first)
            await sender.send_notification("t-1", second)
            assert (await hook.next_accepted()).body == body(second)
            await sender.aclose()
            return hook

    hook = run(main)
    assert [h.body for h in hook.hits] == [body(first)] * 3 + [body(second)]
    assert "gave up after 3 attempts" in caplog.text


def test_a_hanging_receiver_holds_up_neither_the_task_nor_other_receivers(
    store: SqlPushConfigStore,
) -> None:
    events = [event("t-1", step) for step in range(1, 6)]

    async def main() -> None:
        # a client without timeouts: a send that waited on the hanging receiver would never end
        client = httpx.AsyncClient(timeout=None)
        async with receiver(HANG) as slow, receiver() as fast:
            await store.set_info("t-1", config(slow.url, "slow"), ALICE)
            await store.set_info("t-1", config(fast.url, "fast"), BOB)
            sender = quick(store, client=client)
            for ev in events:
                await sender.send_notification("t-1", ev)  # returns: nothing waits on `slow`
            assert [(await fast.next_accepted()).body for _ in events] == [body(e) for e in events]
            assert (await slow.next_arrived()).body == body(events[0])
            assert [h.status for h in slow.hits] == [HANG]  # still unanswered
            await sender.aclose(grace_s=0)  # cancels the hanging delivery
            assert sender.queues == 0
            assert not client.is_closed  # not ours to close
            assert len(slow.hits) == 1
        await client.aclose()

    run(main)


def test_a_receiver_that_is_down_delays_only_its_own_queue(store: SqlPushConfigStore) -> None:
    async def main() -> None:
        async with receiver() as up:
            await store.set_info("t-1", config(closed_port_url(), "down"), ALICE)
            await store.set_info("t-1", config(up.url, "up"), ALICE)
            # a retry of the down one would come in an hour: only aclose can end its queue
            sender = RetryingPushSender(store, first_backoff_s=3600, max_backoff_s=3600)
            await sender.send_notification("t-1", event("t-1", 1))
            await sender.send_notification("t-1", event("t-1", 2))
            assert (await up.next_accepted()).body == body(event("t-1", 1))
            assert (await up.next_accepted()).body == body(event("t-1", 2))
            await sender.aclose(grace_s=0)
            assert sender.queues == 0

    run(main)


def test_events_of_one_config_arrive_in_order_whatever_fails(store: SqlPushConfigStore) -> None:
    rng = random.Random(3)
    answers = [rng.choice([503, 500, 429, 408, DROP, 200, 200]) for _ in range(40)]
    steps = {task: [event(task, step) for step in range(12)] for task in ("t-1", "t-2")}

    async def main() -> dict[str, list[dict[str, Any]]]:
        async with receiver(*answers) as hook:
            for task in steps:
                await store.set_info(task, config(hook.url), ALICE)
            sender = quick(store, max_retries=50)
            for one, two in zip(steps["t-1"], steps["t-2"], strict=True):
                await sender.send_notification("t-1", one)
                await sender.send_notification("t-2", two)
            accepted = [await hook.next_accepted() for _ in range(24)]
            await sender.aclose()
        by_task: dict[str, list[dict[str, Any]]] = {"t-1": [], "t-2": []}
        for hit in accepted:
            by_task[hit.body["statusUpdate"]["taskId"]].append(hit.body)
        return by_task

    by_task = run(main)
    assert by_task == {task: [body(ev) for ev in evs] for task, evs in steps.items()}


def test_the_url_validator_drops_rejected_urls_before_queueing(store: SqlPushConfigStore) -> None:
    async def allowed(url: str) -> bool:
        if "explode" in url:
            raise ValueError("cannot check")
        return "blocked" not in url

    async def main() -> tuple[Receiver, Receiver]:
        async with receiver() as good, receiver() as bad:
            await store.set_info("t-1", config(good.url, "good"), ALICE)
            await store.set_info("t-1", config(bad.url + "/blocked", "bad"), ALICE)
            await store.set_info("t-1", config(bad.url + "/explode", "worse"), ALICE)
            sender = quick(store, url_validator=allowed)
            await sender.send_notification("t-1", event("t-1", 1))
            assert sender.queues <= 1  # only the good one was queued
            await good.next_accepted()
            await sender.join()
            await sender.aclose()
            return good, bad

    good, bad = run(main)
    assert len(good.hits) == 1
    assert bad.hits == []


class BrokenStore(PushNotificationConfigStore):
    """A config store whose reads fail (the database is gone)."""

    async def set_info(self, *args: Any) -> None:
        raise NotImplementedError

    async def get_info(self, *args: Any) -> list[TaskPushNotificationConfig]:
        raise NotImplementedError

    async def get_info_for_dispatch(self, task_id: str) -> list[TaskPushNotificationConfig]:
        raise RuntimeError("the database is gone")

    async def delete_info(self, *args: Any) -> None:
        raise NotImplementedError


def test_failures_never_reach_the_caller(
    store: SqlPushConfigStore, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        broken = quick(BrokenStore())
        await broken.send_notification("t-1", event("t-1", 1))  # logged, not raised
        await broken.aclose()

        await store.set_info("t-1", config("not a url at all"), ALICE)
        sender = quick(store)
        await sender.send_notification("t-1", event("t-1", 1))
        await sender.join()  # the bad URL was logged; the queue's task ended
        assert sender.queues == 0
        await sender.send_notification("no-configs", event("no-configs", 1))
        assert sender.queues == 0
        await sender.aclose()
        await sender.send_notification("t-1", event("t-1", 2))  # closed: dropped, logged
        assert sender.queues == 0

    with caplog.at_level(logging.WARNING, logger="flowledger.a2a.push"):
        run(main)
    assert "the database is gone" in caplog.text
    assert "push sender closed" in caplog.text
