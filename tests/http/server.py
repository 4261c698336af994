"""A real uvicorn server on an ephemeral 127.0.0.1 port, in a thread of the test process."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from application.config import Settings
from interfaces.http.app import create_app
from interfaces.http.config import ServerConfig
from interfaces.rpc.orchestrator import Orchestrator

STARTUP_TIMEOUT_S = 60


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class LiveServer:
    url: str
    orchestrator: Orchestrator
    client: httpx.Client

    def rpc(
        self, method: str, params: Any = None, *, path: str = "/tasks", **headers: str
    ) -> dict[str, Any]:
        """POST one JSON-RPC request (id 1) and return the decoded response object."""
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            body["params"] = params
        response = self.client.post(path, json=body, headers=headers)
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
        return reply

    def result(self, method: str, params: Any = None, **kwargs: Any) -> Any:
        reply = self.rpc(method, params, **kwargs)
        assert "error" not in reply, reply
        return reply["result"]

    def error(self, method: str, params: Any = None, **kwargs: Any) -> dict[str, Any]:
        reply = self.rpc(method, params, **kwargs)
        assert "error" in reply, reply
        error: dict[str, Any] = reply["error"]
        return error


@contextmanager
def running_server(
    settings: Settings,
    config: ServerConfig | None = None,
    *,
    orchestrator: Orchestrator | None = None,
    **app_options: Any,
) -> Iterator[LiveServer]:
    """Serve `create_app(settings, config, **app_options)` until the block ends (lifespan
    and all); app_options are create_app's (agent, agent_card)."""
    engine = orchestrator or Orchestrator(settings)
    app = create_app(settings, config or ServerConfig(), orchestrator=engine, **app_options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(
        uvicorn.Config(
            app, log_level=os.environ.get("FL_TEST_LOG", "warning"), lifespan="on", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not server.ready.wait(STARTUP_TIMEOUT_S):
            raise RuntimeError("the server did not start")
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=60) as client:
            yield LiveServer(url, engine, client)
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_S)
        sock.close()
