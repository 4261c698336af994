"""`flowledger tasks execute` (run a stored tree here, with progress) and `flowledger tasks
watch` (follow a tree that any process runs, from the event store)."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Any

import click
import msgspec

from application.views import tree_json
from domain.status import TERMINAL
from interfaces.cli.calls import with_orchestrator
from interfaces.cli.main import emit, json_option
from interfaces.cli.render import console, print_tree, stream_line
from interfaces.cli.run import EXIT_INTERRUPTED, display
from interfaces.cli.tasks import tasks
from interfaces.rpc import dispatch
from interfaces.rpc.calls import Call
from interfaces.rpc.errors import RpcError
from interfaces.rpc.feed import TreeFeed
from interfaces.rpc.orchestrator import Orchestrator


@tasks.command("execute", short_help="Run a stored tree here, with progress.")
@click.argument("task_id")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 100_000),
    help="Most tasks running at once (default FLOWLEDGER_CONCURRENCY, else 16).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the final result.")
@json_option
def execute(task_id: str, concurrency: int | None, quiet: bool, as_json: bool) -> None:
    """Run the stored tree holding TASK_ID in this process, like `flowledger run` does
    (tasks.execute with wait=true): progress on stderr, then the final tree.

    Use it on a tree made by `tasks create` or `tasks copy`. A finished tree is refused
    (copy it to run it again). If another process is already running the tree, this
    follows that run to its end instead. Interrupted, the run continues with
    `flowledger run --resume`. With --json, prints the tasks.execute answer
    ({root_task_id, status, result, root_task, ...}).

    \b
    Examples:
      flowledger tasks execute 3f2a...
      flowledger tasks copy 3f2a... --json | jq -r .id | xargs flowledger tasks execute

    Exit status: 0 the tree completed, 1 it failed or was cancelled (or no such task,
    or it had already finished), 2 bad usage.
    """
    context, listener = display(as_json, quiet)

    async def body(o: Orchestrator) -> tuple[dict[str, Any], dict[str, Any] | None]:
        assert o.runner is not None
        if listener is not None:
            o.runner.listeners.append(listener)
        answer = await dispatch.call(Call(o), "tasks.execute", {"task_id": task_id, "wait": True})
        # The answer comes from the stored events; let the run here end too (its last
        # progress lines) before the orchestrator closes.
        await asyncio.gather(*o.runner.jobs.values(), return_exceptions=True)
        if as_json:
            return answer, None
        try:
            shown = await dispatch.call(Call(o), "tasks.tree", {"task_id": answer["root_task_id"]})
        except RpcError:  # deleted meanwhile: show what the answer holds
            shown = answer.get("root_task")
        return answer, shown

    try:
        with context:
            answer, shown = with_orchestrator(body, run_trees=True, concurrency=concurrency)
    except KeyboardInterrupt:
        click.echo("interrupted: the run continues with `flowledger run --resume`", err=True)
        sys.exit(EXIT_INTERRUPTED)
    emit(answer, as_json, lambda: print_tree(shown) if shown else click.echo(answer["message"]))
    sys.exit(0 if answer["status"] == "completed" else 1)


def _stamp(event: dict[str, Any]) -> str:
    at = event.get("timestamp")
    if not at:
        return " " * 12
    when = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone()
    return when.strftime("%H:%M:%S.%f")[:-3]


def _watching(feed: TreeFeed) -> str:
    tree = feed.tree
    assert tree is not None
    done = sum(1 for t in tree.tasks.values() if t.status in TERMINAL)
    note = ""
    if not tree.is_terminal and not tree.state.run_requested:
        note = f"; not running yet: start it with `flowledger tasks execute {feed.root_task_id}`"
    return (
        f"watching tree {tree.id} (root {feed.root_task_id}): {tree.status.value}, "
        f"{done} of {len(tree.tasks)} tasks finished{note}"
    )


@tasks.command("watch", short_help="Follow a tree live until it ends.")
@click.argument("task_id")
@json_option
def watch(task_id: str, as_json: bool) -> None:
    """Follow the tree holding TASK_ID live until it ends, whichever process runs it
    (a server, `flowledger run`, `tasks execute`): one line per task state change, then
    the final tree. It reads the event store, so it sees every process's run.

    With --json, prints each stream event as one JSON line, exactly as tasks.execute's
    stream sends them: {type: task_started|task_completed|task_failed|task_skipped|
    task_cancelled|task_retrying|progress, task_id, status, ..., timestamp}, then one
    {type: "final", root_task_id, status}. A line on stderr says when watching starts.

    \b
    Examples:
      flowledger tasks watch 3f2a...
      flowledger tasks watch 3f2a... --json | jq -c 'select(.type == "task_failed")'

    Exit status: 0 the tree completed, 1 it failed or was cancelled (or no such task),
    130 interrupted (the run itself goes on).
    """
    out = console()

    async def body(o: Orchestrator) -> tuple[dict[str, Any], dict[str, Any] | None]:
        tree_id = await o.io(o.ledger.tree_id_of, task_id)
        feed = await TreeFeed.of(o, tree_id)
        click.echo(_watching(feed), err=True)
        final: dict[str, Any] = {}
        async for event in feed.updates():
            final = event
            if as_json:
                click.echo(msgspec.json.encode(event).decode())  # as the SSE stream
                continue
            names = {i: t.name for i, t in feed.tree.tasks.items()} if feed.tree else {}
            out.print(f"{_stamp(event)} {stream_line(event, names)}")
        tree = feed.tree
        shown = None if as_json or tree is None or tree.is_empty else tree_json(tree)
        return final, shown

    try:
        final, shown = with_orchestrator(body, live=True)
    except KeyboardInterrupt:
        click.echo("stopped watching; the tree is not affected", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if shown is not None:
        print_tree(shown)
    sys.exit(0 if final["status"] == "completed" else 1)
