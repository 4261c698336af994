"""The server answers on both stores: health, a create, and a get of what was created."""

from __future__ import annotations

from tests.http.server import LiveServer


def test_health_create_get(server: LiveServer) -> None:
    health = server.result("system.health", {}, path="/system")
    assert health["status"] == "ok"
    created = server.result("tasks.create", [{"id": "root", "name": "root"}])
    assert created["id"] == "root"
    assert server.result("tasks.get", {"task_id": "root"})["tree_status"] == "pending"


def test_get_health_for_probes(server: LiveServer) -> None:
    response = server.client.get("/system/health")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "ok"
    assert report["store"]["kind"] in ("sqlite", "postgresql")
    assert report["projector_lag"] == 0
    assert report["running"]["trees"] == 0
    assert report["running"]["tasks"] == 0
    assert report["running"]["concurrency"] >= 1
