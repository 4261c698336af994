"""The server answers on both stores: health, a create, and a get of what was created."""

from __future__ import annotations

from tests.http.server import LiveServer


def test_health_create_get(server: LiveServer) -> None:
    health = server.result("system.health", {}, path="/system")
    assert health["status"] == "ok"
    created = server.result("tasks.create", [{"id": "root", "name": "root"}])
    assert created["id"] == "root"
    assert server.result("tasks.get", {"task_id": "root"})["tree_status"] == "pending"
