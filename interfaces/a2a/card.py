"""The agent card: what the agent is and does, where to call it (the JSON-RPC interface at
this server's URL), what it can do (streaming, push notifications) and how to
authenticate (a bearer JWT when auth is on)."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol

BEARER = "bearer"

TREE_EXAMPLE = json.dumps(
    {
        "tasks": [
            {"id": "report", "name": "Report", "params": {"executor": "noop"}},
            {
                "id": "fetch",
                "name": "Fetch",
                "parent_id": "report",
                "params": {"executor": "http"},
                "inputs": {"url": "https://example.org/data.json"},
            },
        ]
    }
)


def tree_skills() -> list[AgentSkill]:
    return [
        AgentSkill(
            id="run-task-tree",
            name="Run a task tree",
            description=(
                'Send a data part {"tasks": [...]} (the task array of tasks.create: id, name, '
                "parent_id, dependencies, priority, inputs, params.executor). The tree is "
                "validated (one root, no cycle, all reachable), stored and run by priority "
                "through the registered executors. The A2A task id is the root task id; "
                "each subtask's progress comes as a status update with its id and state in "
                'metadata; each result is the artifact "result:<task id>"; the final state '
                "is the tree's (completed, failed or canceled)."
            ),
            tags=["orchestration", "workflow", "task-tree", "event-sourcing"],
            examples=[TREE_EXAMPLE],
            input_modes=["application/json", "text/plain"],
            output_modes=["application/json", "text/plain"],
        )
    ]


def other_agent_skill() -> AgentSkill:
    """The skill a card names for an agent put in front that brought no card of its own."""
    return AgentSkill(
        id="agent",
        name="Agent",
        description="The agent this flowledger server serves; send it a message.",
        tags=["agent"],
    )


def agent_card(
    *,
    name: str = "flowledger",
    description: str = (
        "Runs trees of tasks (pipelines, agent workflows, batch jobs) with retries, "
        "timeouts, cancellation and crash recovery; every run is recorded as events and "
        "can be audited and replayed."
    ),
    skills: list[AgentSkill] | None = None,
    url: str = "http://127.0.0.1:8000/",
    auth: bool = False,
) -> AgentCard:
    """A 1.0 card with every required field; `url` is replaced per request by the URL the
    client reached (or the configured public URL)."""
    card = AgentCard(
        name=name,
        description=description,
        version=version("flowledger"),
        provider=AgentProvider(organization="flowledger", url="https://github.com/flowledger"),
        supported_interfaces=[interface(url)],
        capabilities=AgentCapabilities(streaming=True, push_notifications=True),
        default_input_modes=["application/json", "text/plain"],
        default_output_modes=["application/json", "text/plain"],
        skills=skills if skills is not None else tree_skills(),
    )
    if auth:
        card.security_schemes[BEARER].CopyFrom(
            SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    bearer_format="JWT",
                    description="HS256 JWT: sub is the user id; roles may hold admin",
                )
            )
        )
        card.security_requirements.append(
            SecurityRequirement(schemes={BEARER: StringList(list=[])})
        )
    return card


def interface(url: str) -> AgentInterface:
    return AgentInterface(
        url=url,
        protocol_binding=TransportProtocol.JSONRPC.value,
        protocol_version=PROTOCOL_VERSION_1_0,
    )


def served(card: AgentCard, url: str) -> AgentCard:
    """`card` with its JSON-RPC interface at `url` (other interfaces kept)."""
    out = AgentCard()
    out.CopyFrom(card)
    kept = [i for i in out.supported_interfaces if i.protocol_binding != "JSONRPC"]
    del out.supported_interfaces[:]
    out.supported_interfaces.extend([interface(url), *kept])
    return out


def card_json(card: AgentCard) -> tuple[dict[str, Any], str]:
    """The card as JSON (with the 0.3 fields older clients read) and its weak ETag."""
    body = agent_card_to_dict(card)
    unsigned = {k: v for k, v in body.items() if k != "signatures"}
    digest = hashlib.sha256(json.dumps(unsigned, sort_keys=True).encode()).hexdigest()
    return body, f'W/"{digest}"'


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match (weak comparison, RFC 9110)."""
    wanted = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in wanted or etag.removeprefix("W/") in wanted
