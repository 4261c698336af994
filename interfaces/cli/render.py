"""Human-readable output: trees and timelines with rich (colour only on a terminal)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

STYLE = {
    "pending": "dim",
    "in_progress": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "skipped": "magenta",
}


def console(*, stderr: bool = False) -> Console:
    return Console(highlight=False, soft_wrap=True, stderr=stderr)


def _label(task: dict[str, Any], names: dict[str, str]) -> str:
    status = task["status"]
    deps = ", ".join(
        names.get(d["id"], d["id"]) + ("" if d["required"] else "?") for d in task["dependencies"]
    )
    extra = f" after {deps}" if deps else ""
    note = f" - {task['error']}" if task.get("error") else ""
    if task.get("result") is not None:
        note += " -> " + _clip(json.dumps(task["result"], ensure_ascii=False), 60)
    detail = f"({task['id']}, p{task['priority']}){extra}{note}"
    return f"[{STYLE[status]}]{status:<11}[/] {escape(task['name'])} [dim]{escape(detail)}[/]"


def print_tree(root: dict[str, Any]) -> None:
    title = f"tree {root['tree_id']} [bold]{root.get('tree_status', '')}[/]"
    top = Tree(title)
    names: dict[str, str] = {}
    walk = [root]
    while walk:
        node = walk.pop()
        names[node["id"]] = node["name"]
        walk.extend(node.get("children", ()))
    stack = [(top.add(_label(root, names)), root)]
    while stack:
        branch, node = stack.pop()
        for child in node.get("children", ()):
            stack.append((branch.add(_label(child, names)), child))
    console().print(top)


def print_task_table(found: list[dict[str, Any]]) -> None:
    if not found:
        console().print("no tasks")
        return
    table = Table("created (UTC)", "status", "name", box=None)
    table.add_column("id", no_wrap=True)  # whole: people copy ids from here
    table.add_column("user")
    for t in found:
        status = t.get("tree_status") or t["status"]
        table.add_row(
            (t["created_at"] or "").replace("T", " ")[:19],
            f"[{STYLE.get(status, '')}]{status}[/]",
            escape(t["name"]),
            escape(t["id"]),
            escape(t["user_id"] or "-"),
        )
    console().print(table)


def print_history(entries: list[dict[str, Any]]) -> None:
    table = Table("version", "time (UTC)", "event", "task", "details", box=None)
    for e in entries:
        data = {k: v for k, v in e["data"].items() if v not in (None, [], {}, ())}
        if "tasks" in data:
            data["tasks"] = f"{len(data['tasks'])} tasks"
        details = _short(json.dumps(data, ensure_ascii=False, default=str))
        when = (e["timestamp"] or "").replace("T", " ").rstrip("Z")
        table.add_row(str(e["version"]), when, e["type"], _short(e["task_id"] or "", 14), details)
    console().print(table)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(text: str, limit: int = 70) -> str:
    return escape(_clip(text, limit))


TASK_FIELDS = (
    "id",
    "name",
    "status",
    "tree_status",
    "parent_id",
    "tree_id",
    "user_id",
    "priority",
    "dependencies",
    "inputs",
    "params",
    "schemas",
    "result",
    "error",
    "progress",
    "attempts",
    "created_at",
    "started_at",
    "completed_at",
    "has_children",
    "original_task_id",
    "has_copy",
)


def print_task(task: dict[str, Any]) -> None:
    """One task, a field per line."""
    table = Table(box=None, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name in TASK_FIELDS:
        if name not in task:
            continue
        value = task[name]
        if name in ("status", "tree_status"):
            shown = f"[{STYLE.get(value, '')}]{value}[/]"
        elif isinstance(value, str):
            shown = escape(value)
        else:
            shown = escape(json.dumps(value, ensure_ascii=False))
        table.add_row(name, shown)
    console().print(table)


def print_executors(found: list[dict[str, Any]]) -> None:
    table = Table("id", "source", "description", box=None)
    for e in found:
        name = escape(e["id"]) if e["enabled"] else f"[dim]{escape(e['id'])} (off)[/]"
        table.add_row(name, escape(e["source"]), escape(e["description"] or "-"))
    console().print(table)


VERBS = {
    "task_started": "started",
    "task_completed": "completed",
    "task_failed": "failed",
    "task_skipped": "skipped",
    "task_cancelled": "cancelled",
    "task_retrying": "retrying",
    "progress": "progress",
}


def stream_line(event: dict[str, Any], names: dict[str, str]) -> str:
    """A stream event (task_started, ..., final) as one line of rich markup."""
    if event["type"] == "final":
        status = event["status"]
        note = f" ({event['message']})" if event.get("message") else ""
        return f"tree {escape(event['root_task_id'])} [{STYLE.get(status, '')}]{status}[/]{note}"
    task_id = event["task_id"]
    who = f"{escape(names.get(task_id, task_id))} [dim]({escape(task_id)})[/]"
    kind = event["type"]
    verb = VERBS.get(kind, kind)
    status = event.get("status") or ""
    detail = ""
    if kind == "task_retrying":
        detail = f": attempt {event['attempt']} failed: {event['error']}; "
        detail += f"retrying in {event['retry_in_s']:g} s"
    elif kind == "progress":
        detail = f" {event['progress']:.0%}" + (f" {event['message']}" if event["message"] else "")
    elif event.get("error"):
        detail = f": {event['error']}"
    elif kind == "task_started" and event.get("attempt", 1) > 1:
        detail = f", attempt {event['attempt']}"
    return f"[{STYLE.get(status, '')}]{verb}[/] {who}{escape(detail)}"
