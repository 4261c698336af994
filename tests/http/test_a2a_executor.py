"""The `a2a` executor against real servers: a tree on server A calls the A2A agent of
server B (another flowledger, running task trees) or of a small plugged agent, and follows
the remote task to its end; cancelling A's task cancels B's tree."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from a2a.helpers import get_message_text, new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import AgentCard, AgentSkill, Part
from google.protobuf import json_format

from application.config import Settings
from interfaces.a2a.card import agent_card
from interfaces.executors.a2a import A2A, A2AInputs
from interfaces.http.config import ServerConfig
from tests.http.server import LiveServer, running_server
from tests.http.support import (
    SECRET,
    WAIT_S,
    Names,
    bearer,
    gate,
    request,
    run_with,
    sse_lines,
    task,
    token,
)


# -- servers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """B: a flowledger server; its A2A agent runs task trees."""
    with running_server(Settings(home=tmp_path_factory.mktemp("remote"))) as live:
        yield live


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A: the flowledger server whose trees call other agents."""
    with running_server(Settings(home=tmp_path_factory.mktemp("caller"))) as live:
        yield live


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """B with authentication on: its A2A endpoint wants a bearer token."""
    home = tmp_path_factory.mktemp("guarded")
    with running_server(Settings(home=home), ServerConfig(jwt_secret=SECRET)) as live:
        yield live


class Parrot(AgentExecutor):
    """A plugged agent: "hello" gets a message back; "need input" asks for input; anything
    else a completed task whose artifacts show what arrived (text or data, context id,
    metadata), one of them sent in two chunks."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None
        text = get_message_text(message)
        if text == "hello":
            await event_queue.enqueue_event(new_text_message("hi there"))
            return
        task = context.current_task or new_task_from_user_message(message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        if text == "need input":
            await updater.requires_input(updater.new_agent_message([Part(text="which one?")]))
            return
        heard = Part()
        heard.CopyFrom(message.parts[0])
        await updater.add_artifact([heard], name="heard")
        await updater.add_artifact([Part(text=task.context_id)], name="context")
        metadata = json_format.MessageToDict(message.metadata)
        await updater.add_artifact([Part(text=str(sorted(metadata.items())))], name="metadata")
        await updater.add_artifact([Part(text="one")], artifact_id="chunks", last_chunk=False)
        await updater.add_artifact(
            [Part(text="two")], artifact_id="chunks", append=True, last_chunk=True
        )
        await updater.complete(updater.new_agent_message([Part(text="done")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None
        assert context.context_id is not None
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def parrot_card(streaming: bool) -> AgentCard:
    card = agent_card(
        name="parrot",
        description="Repeats what it hears.",
        skills=[AgentSkill(id="parrot", name="Parrot", description="Repeats", tags=["test"])],
    )
    card.capabilities.streaming = streaming
    return card


@pytest.fixture(scope="module", params=[True, False], ids=["streaming", "blocking"])
def parrot(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("parrot")
    card = parrot_card(streaming=request.param)
    with running_server(Settings(home=home), agent=Parrot(), agent_card=card) as live:
        yield live


@pytest.fixture
def names() -> Names:
    return Names()


# -- helpers ------------------------------------------------------------------------------
def calling(task_id: str, **inputs: Any) -> dict[str, Any]:
    """A task that runs the `a2a` executor with `inputs`."""
    return task(task_id, **run_with("a2a", **inputs))


def run_call(server: LiveServer, task_id: str, **inputs: Any) -> dict[str, Any]:
    """Run a one-task tree calling an agent; the task as it ended."""
    done = server.result("tasks.execute", {"tasks": [calling(task_id, **inputs)], "wait": True})
    root: dict[str, Any] = done["root_task"]
    assert root["tree_status"] == done["status"]
    return root


def until(check: Callable[[], bool], what: str) -> None:
    """Wait for a state another server reaches on its own (bounded; never a timing)."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT_S} s"
        time.sleep(0.01)


def tree_status(server: LiveServer, task_id: str, **headers: str) -> str:
    status: str = server.result("tasks.get", {"task_id": task_id}, **headers)["tree_status"]
    return status


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nobody listens there any more


# -- calling another flowledger -----------------------------------------------------------
def test_a_task_runs_a_tree_on_another_server_and_returns_its_results(
    store_settings: Settings, remote: LiveServer, names: Names
) -> None:
    b_root, b_kid, call = names("b-root"), names("b-kid"), names("call")
    remote_tree = [
        task(b_root, **run_with("echo", x=1)),
        task(b_kid, b_root, **run_with("echo", words=["a", "b"], n=2, half=0.5)),
    ]
    with running_server(store_settings) as a:
        root = run_call(a, call, url=remote.url, data={"tasks": remote_tree})
        history = a.result("tasks.history", {"task_id": call})
    assert root["status"] == "completed", root["error"]
    result = root["result"]
    assert result["agent"] == "flowledger"
    assert result["url"] == remote.url
    assert result["task_id"] == b_root  # the A2A task id is B's root task id
    assert isinstance(result["context_id"], str)
    assert result["context_id"]
    assert result["state"] == "completed"
    assert result["artifacts"] == {
        f"result:{b_root}": {"x": 1},
        f"result:{b_kid}": {"words": ["a", "b"], "n": 2, "half": 0.5},
    }
    assert isinstance(result["artifacts"][f"result:{b_kid}"]["n"], int)  # not 2.0
    assert "completed" in result["message"]
    # B holds the tree, run to its end
    assert tree_status(remote, b_root) == "completed"
    assert remote.result("tasks.get", {"task_id": b_kid})["result"]["words"] == ["a", "b"]
    # A's task named the remote task in its progress as soon as it knew it
    said = [e["data"].get("message") or "" for e in history if e["type"] == "Progressed"]
    assert any(b_root in m for m in said), history


def test_a_remote_tree_that_fails_fails_the_task_naming_the_remote_state(
    caller: LiveServer, remote: LiveServer, names: Names
) -> None:
    b_root, bad, call = names("b-root"), names("bad"), names("call")
    remote_tree = [task(b_root), task(bad, b_root, **run_with("fail", message="boom"))]
    root = run_call(caller, call, url=remote.url, data={"tasks": remote_tree})
    assert root["status"] == "failed"
    error = root["error"]
    assert error.startswith("RemoteTaskFailed: the remote A2A task"), error
    assert b_root in error
    assert "ended failed" in error
    assert "RequestedFailure: boom" in error  # B's status message says why
    assert tree_status(remote, b_root) == "failed"


def test_a_message_the_remote_refuses_fails_the_task_with_its_error(
    caller: LiveServer, remote: LiveServer, names: Names
) -> None:
    unknown = [task(names("b-root"), **run_with("no.such.executor"))]
    root = run_call(caller, names("call"), url=remote.url, data={"tasks": unknown})
    assert root["status"] == "failed"
    assert root["error"].startswith("A2ACallError: the A2A agent 'flowledger' at"), root
    assert "InvalidParamsError" in root["error"]
    assert "no.such.executor" in root["error"]
    text = run_call(caller, names("text"), url=remote.url, text="run something")
    assert text["status"] == "failed"
    assert "no part holds a data part" in text["error"]


# -- inputs -------------------------------------------------------------------------------
AGENT = "http://agent.example"


@pytest.mark.parametrize(
    ("inputs", "field", "reason"),
    [
        ({"text": "hi"}, "inputs.url", "Field required"),
        ({"url": "ftp://agent.example", "text": "hi"}, "inputs.url", "http(s) URL"),
        ({"url": AGENT, "text": "hi", "data": {}}, "inputs.data", "not both"),
        ({"url": AGENT, "message": "hi", "text": "hi"}, "inputs.message", "not both"),
        ({"url": AGENT}, "inputs.message", "nothing to send"),
        ({"url": AGENT, "text": "hi", "timeout": 0}, "inputs.timeout", "greater than 0"),
        ({"url": AGENT, "text": "hi", "timeout": "soon"}, "inputs.timeout", "number"),
        ({"url": AGENT, "text": "hi", "headers": {"X": 1}}, "inputs.headers.X", "string"),
    ],
)
def test_bad_inputs_fail_the_task_naming_the_field(
    caller: LiveServer, names: Names, inputs: dict[str, Any], field: str, reason: str
) -> None:
    # Inputs may be completed by dependency results at run time, so an executor's
    # input_schema is checked when the task starts (not by tasks.create): the task fails
    # at once, without retry, and the error names the field.
    root = run_call(caller, names("call"), **inputs)
    assert root["status"] == "failed"
    assert root["error"].startswith(f"ValidationError: {field}: "), root["error"]
    assert reason in root["error"]
    assert root["attempts"] == 1


def test_message_is_text_or_data_and_the_schema_is_published(caller: LiveServer) -> None:
    url = "http://agent.example"
    as_text = A2AInputs.model_validate({"url": url, "message": "hi"})
    as_data = A2AInputs.model_validate({"url": url, "message": {"tasks": []}})
    assert (as_text.text, as_text.data, as_text.message) == ("hi", None, None)
    assert (as_data.text, as_data.data, as_data.message) == (None, {"tasks": []}, None)
    again = A2AInputs.model_validate(as_text.model_dump())  # the runner's merge: idempotent
    assert again == as_text
    entry = caller.orchestrator.ledger.executors.get("a2a")  # the entry point registered it
    assert entry is not None
    assert entry.source == "entry point interfaces.executors.a2a:A2A"
    schema = entry.describe()["input_schema"]
    assert set(schema["properties"]) >= {"url", "text", "data", "message", "timeout"}


# -- unreachable and not an agent ---------------------------------------------------------
def test_an_unreachable_agent_fails_the_task_clearly(caller: LiveServer, names: Names) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    root = run_call(caller, names("call"), url=url, text="hi")
    assert root["status"] == "failed"
    assert root["error"].startswith(f"A2ACallError: cannot reach the A2A agent at {url}: ")
    assert "\n" not in root["error"]


def test_a_url_without_an_agent_card_fails_the_task_clearly(
    caller: LiveServer, names: Names
) -> None:
    url = f"{caller.url}/nothing-here"
    root = run_call(caller, names("call"), url=url, text="hi")
    assert root["status"] == "failed"
    assert root["error"] == (
        f"A2ACallError: no A2A agent at {url}: "
        f"GET {url}/.well-known/agent-card.json answered HTTP 404"
    )


# -- cancelling and timing out ------------------------------------------------------------
def held_tree(names: Names) -> tuple[str, str, list[dict[str, Any]]]:
    """B's tree: a root whose child runs until its gate opens (never, here)."""
    b_root, held = names("b-root"), names("held")
    return b_root, held, [task(b_root), task(held, b_root, **run_with("test.hold", gate=held))]


def test_cancelling_the_task_cancels_the_remote_tree(
    caller: LiveServer, remote: LiveServer, names: Names
) -> None:
    call = names("call")
    b_root, held, remote_tree = held_tree(names)
    body = request(
        "tasks.execute",
        {
            "tasks": [calling(call, url=remote.url, data={"tasks": remote_tree})],
            "use_streaming": True,
        },
    )
    with caller.client.stream("POST", "/tasks", json=body) as response:
        events = sse_lines(response)
        for event in events:  # A's task knows the remote task once it reports it
            if event["type"] == "progress" and b_root in (event.get("message") or ""):
                break
        gate(held).wait_entered()  # B's tree is running
        assert tree_status(remote, b_root) == "in_progress"
        [report] = caller.result("tasks.cancel", {"task_ids": [call]})
        assert report["status"] == "cancelled"
        final = [e for e in events if e["type"] == "final"]
    assert final[-1]["status"] == "cancelled"
    until(lambda: tree_status(remote, b_root) == "cancelled", "B's tree is cancelled")
    assert remote.result("tasks.get", {"task_id": held})["status"] == "cancelled"


def test_a_remote_task_that_outlasts_the_timeout_is_cancelled(
    caller: LiveServer, remote: LiveServer, names: Names
) -> None:
    b_root, held, remote_tree = held_tree(names)
    root = run_call(caller, names("call"), url=remote.url, data={"tasks": remote_tree}, timeout=2)
    assert gate(held).entered.is_set()
    assert root["status"] == "failed"
    assert root["error"].startswith(f"RemoteTaskTimeout: the remote A2A task {b_root} at")
    assert "did not end within 2 s (last state: " in root["error"]
    until(lambda: tree_status(remote, b_root) == "cancelled", "B's tree is cancelled")


# -- authentication -----------------------------------------------------------------------
def test_headers_carry_the_token_a_guarded_agent_wants(
    caller: LiveServer, guarded: LiveServer, names: Names
) -> None:
    user = names("user")
    auth = bearer(token(user))
    b_root = names("b-root")
    data = {"tasks": [task(b_root, **run_with("echo", who="me"))]}
    root = run_call(caller, names("call"), url=guarded.url, data=data, headers=auth)
    assert root["status"] == "completed", root["error"]
    assert root["result"]["artifacts"] == {f"result:{b_root}": {"who": "me"}}
    assert guarded.result("tasks.get", {"task_id": b_root}, **auth)["user_id"] == user

    refused = run_call(caller, names("no-token"), url=guarded.url, data=data)
    assert refused["status"] == "failed"
    assert refused["error"].startswith("A2ACallError: the A2A agent 'flowledger' at")
    assert "HTTP 401" in refused["error"]


# -- other agents -------------------------------------------------------------------------
def test_another_agent_s_artifacts_come_back_as_json(
    caller: LiveServer, parrot: LiveServer, names: Names
) -> None:
    root = run_call(
        caller,
        names("call"),
        url=parrot.url,
        data={"n": 1, "f": 1.5, "list": [1, 2]},
        context_id=names("ctx"),
        metadata={"trace": "t-1"},
    )
    assert root["status"] == "completed", root["error"]
    result = root["result"]
    assert result["agent"] == "parrot"
    assert result["state"] == "completed"
    assert result["context_id"] == names("ctx")
    assert result["message"] == "done"
    assert result["artifacts"] == {
        "heard": {"n": 1, "f": 1.5, "list": [1, 2]},
        "context": names("ctx"),
        "metadata": "[('trace', 't-1')]",
        "chunks": ["one", "two"],  # two chunks, appended: several parts -> a list
    }
    spoken = run_call(caller, names("text"), url=parrot.url, message="polly")
    assert spoken["result"]["artifacts"]["heard"] == "polly"


def test_an_agent_that_answers_with_a_message_gives_the_message(
    caller: LiveServer, parrot: LiveServer, names: Names
) -> None:
    root = run_call(caller, names("call"), url=parrot.url, text="hello")
    assert root["status"] == "completed", root["error"]
    assert root["result"] == {"agent": "parrot", "url": parrot.url, "message": "hi there"}


def test_a_remote_task_that_wants_input_fails_the_task(
    caller: LiveServer, parrot: LiveServer, names: Names
) -> None:
    root = run_call(caller, names("call"), url=parrot.url, text="need input")
    assert root["status"] == "failed"
    error = root["error"]
    assert error.startswith("RemoteTaskBlocked: the remote A2A task"), error
    assert "is input-required: which one?" in error
    assert "cannot answer" in error


def test_the_executor_runs_outside_a_tree_too(parrot: LiveServer) -> None:
    inputs = {"url": parrot.url, "text": "hello"}
    result = asyncio.run(A2A().execute(inputs))  # no task context: no progress reports
    assert result["message"] == "hi there"
