"""Another agent in front: create_app(agent=..., agent_card=...) serves any a2a-sdk
AgentExecutor with flowledger's protocol layer and persisted stores; tasks of an agent that
cannot resume after a restart are marked failed, not left working."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.helpers import get_message_text, new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentSkill,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)

from application.config import ConfigError, Settings
from interfaces.a2a.card import agent_card
from interfaces.a2a.service import load_agent
from interfaces.http.config import ServerConfig
from tests.http.server import running_server

WAIT_S = 30


class EchoAgent(AgentExecutor):
    """'hello' gets a plain message back; anything else a task that echoes it as an
    artifact; 'wait' works until `release` is set (or the server stops)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        text = get_message_text(context.message)
        if text == "hello":
            await event_queue.enqueue_event(new_text_message("hi there"))
            return
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        if text == "wait":
            self.started.set()
            while not self.release.is_set():
                await asyncio.sleep(0.005)
        await updater.add_artifact([Part(text=text.upper())], name="echo")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None
        assert context.context_id is not None
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def echo_card() -> object:
    return agent_card(
        name="echo",
        description="Echoes text in upper case.",
        skills=[AgentSkill(id="echo", name="Echo", description="Upper-cases text", tags=["test"])],
    )


def text_message(text: str) -> SendMessageRequest:
    message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    return SendMessageRequest(message=message)


async def connect(url: str, http: httpx.AsyncClient) -> Client:
    card = await A2ACardResolver(http, url).get_agent_card()
    return ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)


async def collect(events: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [event async for event in events]


def test_a_plugged_agent_is_served_with_its_card(tmp_path: Path) -> None:
    agent = EchoAgent()
    with running_server(Settings(home=tmp_path), agent=agent, agent_card=echo_card()) as live:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=WAIT_S) as http:
                card = await A2ACardResolver(http, live.url).get_agent_card()
                assert card.name == "echo"
                assert [s.id for s in card.skills] == ["echo"]
                assert card.supported_interfaces[0].url == live.url.rstrip("/") + "/"
                client = await connect(live.url, http)
                [reply] = await collect(client.send_message(text_message("hello")))
                assert get_message_text(reply.message) == "hi there"
                [answer] = await collect(client.send_message(text_message("shout")))
                task = answer.task
                assert task.status.state == TaskState.TASK_STATE_COMPLETED
                assert [a.parts[0].text for a in task.artifacts] == ["SHOUT"]
                stored = await client.get_task(GetTaskRequest(id=task.id))
                assert stored.status.state == TaskState.TASK_STATE_COMPLETED

        asyncio.run(scenario())
        # the tree agent is not in front: no tree was created
        assert live.result("tasks.list", {}) == []


def test_an_agent_that_cannot_resume_leaves_failed_tasks_not_working_ones(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path)
    agent = EchoAgent()
    with running_server(settings, agent=agent, agent_card=echo_card()) as live:

        async def start() -> str:
            async with httpx.AsyncClient(timeout=WAIT_S) as http:
                client = await connect(live.url, http)
                request = text_message("wait")
                request.configuration.CopyFrom(SendMessageConfiguration(return_immediately=True))
                [answer] = await collect(client.send_message(request))
                return answer.task.id

        task_id = asyncio.run(start())
        assert agent.started.wait(WAIT_S)
    with running_server(settings, agent=EchoAgent(), agent_card=echo_card()) as live:

        async def read() -> None:
            async with httpx.AsyncClient(timeout=WAIT_S) as http:
                client = await connect(live.url, http)
                task = await client.get_task(GetTaskRequest(id=task_id))
                assert task.status.state == TaskState.TASK_STATE_FAILED
                assert "server stopped" in get_message_text(task.status.message)

        asyncio.run(read())


@pytest.mark.parametrize("path", ["/", ""])
def test_json_rpc_answers_with_and_without_the_trailing_slash(tmp_path: Path, path: str) -> None:
    with running_server(Settings(home=tmp_path), agent=EchoAgent(), agent_card=echo_card()) as live:
        body = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "GetTask",
            "params": {"id": "nope"},
        }
        response = httpx.post(
            live.url.rstrip("/") + path, json=body, headers={"A2A-Version": "1.0"}
        )
        assert response.status_code == 200
        assert response.json()["error"]["code"] == -32001


def test_serve_takes_the_agent_from_the_environment(tmp_path: Path) -> None:
    config = ServerConfig.from_env(
        {"FLOWLEDGER_A2A_AGENT": "tests.http.test_a2a_pluggable:EchoAgent"}
    )
    with running_server(Settings(home=tmp_path), config) as live:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=WAIT_S) as http:
                card = await A2ACardResolver(http, live.url).get_agent_card()
                assert [s.id for s in card.skills] == ["agent"]  # not the tree agent's
                client = await connect(live.url, http)
                [reply] = await collect(client.send_message(text_message("hello")))
                assert get_message_text(reply.message) == "hi there"

        asyncio.run(scenario())


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("no-colon", "must look like package.module:attribute"),
        ("tests.http.nowhere:Agent", "No module named"),
        ("tests.http.test_a2a_pluggable:Missing", "has no attribute 'Missing'"),
        ("tests.http.test_a2a_pluggable:WAIT_S", "is a int, not an a2a-sdk AgentExecutor"),
    ],
)
def test_a_bad_agent_reference_is_a_clear_configuration_error(reference: str, reason: str) -> None:
    def serve_with(env_value: str) -> AgentExecutor:
        return load_agent(
            ServerConfig.from_env({"FLOWLEDGER_A2A_AGENT": env_value}).a2a_agent or ""
        )

    with pytest.raises(ConfigError, match=reason):
        serve_with(reference)
