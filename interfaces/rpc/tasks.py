"""The tasks.* methods: one small function per use case, on the Ledger (writes, history),
the read models (reads, lists, counts) and the Runner (execute, cancel)."""

from __future__ import annotations

import contextlib
from typing import Any

from application.runner.runner import TreeBusy
from application.views import children_of, event_json, task_json, tree_json
from domain.copying import CopyMode, plan_as_tasks
from domain.errors import Conflict, FieldError, InvalidSpec, TaskNotFound
from domain.specs import (
    parse_changes,
    task_items,
)
from domain.tree import TaskTree
from interfaces.rpc.calls import Call, EventStream
from interfaces.rpc.errors import Forbidden
from interfaces.rpc.feed import TreeFeed
from interfaces.rpc.params import (
    CancelParams,
    ChildrenParams,
    CopyParams,
    ExecuteParams,
    HistoryParams,
    ListParams,
    ReplayParams,
    RunningListParams,
    RunningStatusParams,
    TaskRef,
    UserParams,
    instant,
    read_params,
)
from interfaces.rpc.webhooks import deliver


def _invalid(field: str, reason: str) -> InvalidSpec:
    return InvalidSpec(f"{field}: {reason}", fields=[FieldError(field, reason)])


def _every_field(found: list[FieldError]) -> InvalidSpec:
    """One refusal naming each field of `found`."""
    extra = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return InvalidSpec(f"{found[0].field}: {found[0].reason}{extra}", fields=found)


def owned_payload(call: Call, payload: Any) -> Any:
    """With auth on, a new tree belongs to the caller: tasks without a user_id get the
    caller's; a plain user may not create tasks for anyone else."""
    user = call.caller.user_id
    if user is None:
        return payload
    items = task_items(payload)
    owned: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            given = item.get("user_id")
            if given is None:
                item = {**item, "user_id": user}
            elif isinstance(given, str) and given != user and not call.caller.admin:
                raise Forbidden(
                    f"tasks[{i}].user_id: cannot create tasks for user {given!r}",
                    ids=(str(item.get("id", i)),),
                    fields=[FieldError(f"tasks[{i}].user_id", "must be your own user id")],
                )
        owned.append(item)
    return owned


async def create(call: Call, payload: Any) -> dict[str, Any]:
    tree = await _create_tree(call, payload)
    return tree_json(tree)


async def _create_tree(call: Call, payload: Any, *, run: bool = False) -> TaskTree:
    o = call.orchestrator
    owned = owned_payload(call, payload)
    return await o.io(lambda: o.ledger.create_tree(owned, run=run))


async def get(call: Call, raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict) and "task_id" not in raw and "id" in raw:  # aipartnerupflow's alias
        raw = {"task_id": raw["id"], **{k: v for k, v in raw.items() if k != "id"}}
    task_id = read_params(raw, TaskRef).task_id
    await call.require_owner(task_id)
    o = call.orchestrator
    if await o.fresh():
        return await o.lookup(o.read_model.task, task_id)
    tree = await o.io(o.ledger.tree_of, task_id)
    return task_json(tree, tree.task(task_id))


async def tree(call: Call, raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict) and "task_id" not in raw and "root_id" in raw:
        raw = {"task_id": raw["root_id"], **{k: v for k, v in raw.items() if k != "root_id"}}
    task_id = read_params(raw, TaskRef).task_id
    await call.require_owner(task_id)
    o = call.orchestrator
    if await o.fresh():
        return await o.io(o.read_model.tree, task_id)
    return tree_json(await o.io(o.ledger.tree_of, task_id))


async def children(call: Call, p: ChildrenParams) -> list[dict[str, Any]]:
    if (p.task_id is None) == (p.parent_id is None):
        raise _invalid("task_id", "give task_id or parent_id (one of them)")
    parent = p.task_id if p.task_id is not None else p.parent_id
    assert parent is not None
    await call.require_owner(parent)
    o = call.orchestrator
    if await o.fresh():
        return await o.io(o.read_model.children, parent)
    found = await o.io(o.ledger.tree_of, parent)
    return [task_json(found, t) for t in children_of(found, parent)]


async def list_tasks(call: Call, p: ListParams) -> list[dict[str, Any]]:
    o = call.orchestrator
    await o.fresh()
    user = call.user_filter(p.user_id)
    return await o.io(
        lambda: o.read_model.list_tasks(
            user_id=user, status=p.status, root_only=p.root_only, limit=p.limit, offset=p.offset
        )
    )


async def update(call: Call, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _invalid("params", "expected an object")
    wanted = {k: v for k, v in raw.items() if k != "task_id"}
    errors: list[FieldError] = []
    try:
        task_id = read_params({k: v for k, v in raw.items() if k == "task_id"}, TaskRef).task_id
    except InvalidSpec as exc:
        errors += exc.fields
    try:
        changes = parse_changes(wanted)
    except InvalidSpec as exc:
        errors += exc.fields
    if errors:
        raise _every_field(errors)
    await call.require_owner(task_id)
    o = call.orchestrator
    updated = await o.io(o.ledger.update_task, task_id, changes)
    return task_json(updated, updated.task(task_id))


async def delete(call: Call, p: TaskRef) -> dict[str, Any]:
    await call.require_owner(p.task_id)
    o = call.orchestrator
    removed = await o.io(o.ledger.remove_task, p.task_id)
    return {
        "success": True,
        "task_id": p.task_id,
        "deleted_count": len(removed),
        "deleted_ids": list(removed),
    }


async def copy(call: Call, p: CopyParams) -> dict[str, Any]:
    if p.custom_task_ids is not None and p.copy_mode != "custom":
        raise _invalid("custom_task_ids", "only with copy_mode custom")
    if p.copy_mode == "custom" and not p.custom_task_ids:
        raise _invalid("custom_task_ids", "copy_mode custom needs at least one task id")
    await call.require_owner(p.task_id)
    o = call.orchestrator
    mode, ids = CopyMode(p.copy_mode), p.custom_task_ids or ()
    if not p.save:
        plan = await o.io(o.ledger.plan_copy, p.task_id, mode, ids, p.children)
        return {"tasks": plan_as_tasks(plan), "saved": False}
    return tree_json(await o.io(o.ledger.copy_tree, p.task_id, mode, ids, p.children))


async def execute(call: Call, raw: Any) -> dict[str, Any] | EventStream:
    """Run a stored tree (task_id) or a new one (tasks); answer at once, when it ends
    (wait), or as a stream of its events (use_streaming); webhooks get the same events."""
    raw, copy_execution = _execute_aliases(raw)
    p = read_params(raw, ExecuteParams)
    if (p.task_id is None) == (p.tasks is None):
        raise _invalid("task_id", "give task_id or tasks (one of them)")
    if p.webhook_config is not None:
        refused = call.orchestrator.callbacks.refuses(p.webhook_config.url)
        if refused is not None:
            raise _invalid("webhook_config.url", refused)
    if p.use_streaming and not call.streaming and not call.notification:
        raise _invalid("use_streaming", "a stream cannot answer inside a batch")
    streaming = p.use_streaming and call.streaming
    o = call.orchestrator
    if o.runner is None:
        raise Conflict("this process does not run trees")
    original: str | None = None
    requested = p.tasks is not None  # a new tree is stored with its run request
    if p.tasks is not None:
        tree_id = (await _create_tree(call, p.tasks, run=True)).id
    else:
        await call.require_owner(p.task_id)  # type: ignore[arg-type]
        if copy_execution:
            original = p.task_id
            tree_id = (await o.io(o.ledger.copy_tree, p.task_id, CopyMode.MINIMAL)).id
        else:
            tree_id = await o.io(o.ledger.tree_id_of, p.task_id)
    feed = await TreeFeed.of(o, tree_id)  # before the run starts: it misses nothing
    if feed.finished:
        assert feed.tree is not None
        raise Conflict(
            f"the tree has already finished ({feed.tree.status.value}); "
            "copy it (tasks.copy) to run it again",
            ids=(feed.root_task_id,),
        )
    if p.webhook_config is not None:
        hook = await TreeFeed.of(o, tree_id)
        delivery = deliver(hook.updates(), p.webhook_config, hook.root_task_id, o.callbacks)
        o.spawn(delivery, f"webhook:{tree_id}")
    if not requested:  # stored before the answer: a server dying now resumes the tree
        await o.io(o.ledger.request_run, feed.root_task_id)
    try:
        running = tree_id in o.runner.jobs
        await o.runner.start(tree_id)
        message = "The tree is already running" if running else "Task execution started"
    except TreeBusy:
        message = "The tree is already being run by another process"
    answer: dict[str, Any] = {
        "success": True,
        "protocol": "jsonrpc",
        "root_task_id": feed.root_task_id,
        "task_id": p.task_id or feed.root_task_id,
        "status": "in_progress",
        "message": message,
        "streaming": streaming,
    }
    if original is not None:
        answer["original_task_id"] = original
    if p.webhook_config is not None:
        answer["webhook_url"] = p.webhook_config.url
    if streaming:
        return EventStream(feed.root_task_id, feed.updates())
    if p.wait:
        final: dict[str, Any] = {}
        async for event in feed.updates():
            final = event
        answer |= {"status": final["status"], "message": f"The tree ended {final['status']}"}
        if feed.tree is not None and not feed.tree.is_empty:
            root = feed.tree.tasks[feed.tree.root_id]
            answer |= {"result": root.result, "root_task": task_json(feed.tree, root)}
    return answer


def _execute_aliases(raw: Any) -> tuple[Any, bool]:
    """aipartnerupflow's spellings: `id` for task_id; copy_execution (run a copy of the
    task's part of the tree: the minimal copy, which always holds its children)."""
    if not isinstance(raw, dict):
        return raw, False
    out = dict(raw)
    if "id" in out and "task_id" not in out:
        out["task_id"] = out.pop("id")
    copy_execution = out.pop("copy_execution", False)
    children = out.pop("copy_children", False)
    for name, value in (("copy_execution", copy_execution), ("copy_children", children)):
        if not isinstance(value, bool):
            raise _invalid(name, "must be true or false")
    return out, copy_execution


def _id_list(raw: Any, name: str) -> Any:
    """task_ids (or aipartnerupflow's context_ids), as a list or a comma-separated string."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    if "context_ids" in out and "task_ids" not in out:
        out["task_ids"] = out.pop("context_ids")
    if "task_id" in out and "task_ids" not in out and name == "tasks.cancel":
        out["task_ids"] = [out.pop("task_id")]
    if "error_message" in out and "reason" not in out:
        out["reason"] = out.pop("error_message")
    ids = out.get("task_ids")
    if isinstance(ids, str):
        out["task_ids"] = [i.strip() for i in ids.split(",") if i.strip()]
    return out


async def cancel(call: Call, raw: Any) -> list[dict[str, Any]]:
    p = read_params(_id_list(raw, "tasks.cancel"), CancelParams)
    for task_id in dict.fromkeys(p.task_ids):
        with contextlib.suppress(TaskNotFound):  # reported as not_found below
            await call.require_owner(task_id)
    o = call.orchestrator
    reason = p.reason or "cancelled by request"
    if o.runner is not None:
        reports = await o.runner.cancel(p.task_ids, reason)
    else:
        reports = await o.io(o.ledger.cancel, p.task_ids, reason)
    return [r | {"force": p.force} for r in reports]


async def running_list(call: Call, p: RunningListParams) -> list[dict[str, Any]]:
    o = call.orchestrator
    await o.fresh()
    user = call.user_filter(p.user_id)
    return await o.io(lambda: o.read_model.running(user_id=user, limit=p.limit))


async def running_status(call: Call, raw: Any) -> list[dict[str, Any]]:
    p = read_params(_id_list(raw, "tasks.running.status"), RunningStatusParams)
    o = call.orchestrator
    await o.fresh()
    found = await o.io(o.read_model.running_status, p.task_ids)
    if call.caller.unrestricted:
        return found
    shown = []
    for entry in found:
        if entry["status"] != "not_found":
            owner = await o.io(o.read_model.owner, entry["task_id"])
            if owner != call.caller.user_id:
                entry = {"task_id": entry["task_id"], "status": "forbidden", "is_running": False}
        shown.append(entry)
    return shown


async def running_count(call: Call, p: UserParams) -> dict[str, Any]:
    o = call.orchestrator
    await o.fresh()
    user = call.user_filter(p.user_id)
    return await o.io(lambda: o.read_model.running_count(user_id=user))


async def history(call: Call, p: HistoryParams) -> list[dict[str, Any]]:
    await call.require_owner(p.task_id, removed_too=True)
    o = call.orchestrator
    found = await o.io(o.ledger.history, p.task_id, p.after_version, p.limit)
    return [event_json(e) for e in found]


async def replay(call: Call, p: ReplayParams) -> dict[str, Any]:
    if p.version is not None and p.at is not None:
        raise _invalid("at", "give version or at, not both")
    at = instant(p.at, "at") if p.at is not None else None
    await call.require_owner(p.task_id, removed_too=True)
    o = call.orchestrator
    found = await o.io(lambda: o.ledger.state_at(p.task_id, version=p.version, at=at))
    view = tree_json(found)
    view["version"] = found.version
    return view
