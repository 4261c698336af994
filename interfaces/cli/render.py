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
