"""Optional JWT auth (HS256, FLOWLEDGER_JWT_SECRET) with Litestar's JWTAuth: `sub` is the
user id, `roles` (a list, or aipartnerupflow's single `role`) may hold "admin"."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.security.jwt import JWTAuth, Token
from litestar.security.jwt.token import JWTDecodeOptions

from interfaces.rpc.calls import ANONYMOUS, Caller

ADMIN = "admin"


@dataclass
class BearerToken(Token):
    """Litestar's Token without its demand for `iat`: a token needs sub and exp only."""

    @classmethod
    def decode_payload(
        cls,
        encoded_token: str,
        secret: str,
        algorithms: list[str],
        issuer: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        options: JWTDecodeOptions | None = None,
    ) -> Any:
        payload = super().decode_payload(
            encoded_token, secret, algorithms, issuer, audience, options
        )
        if isinstance(payload, dict):
            payload.setdefault("iat", int(time.time()))
        return payload


def roles_of(token: Token) -> set[str]:
    roles = token.extras.get("roles", [])
    role = token.extras.get("role")
    found = {r for r in roles if isinstance(r, str)} if isinstance(roles, list) else set()
    if isinstance(roles, str):
        found.add(roles)
    if isinstance(role, str):
        found.add(role)
    return found


async def retrieve_caller(
    token: BearerToken, _connection: ASGIConnection[Any, Any, Any, Any]
) -> Caller:
    return Caller(user_id=token.sub, admin=ADMIN in roles_of(token))


def jwt_auth(secret: str) -> JWTAuth[Caller, BearerToken]:
    return JWTAuth[Caller, BearerToken](
        retrieve_user_handler=retrieve_caller,
        token_secret=secret,
        token_cls=BearerToken,
        algorithm="HS256",
        exclude=["/schema"],
    )


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """The authenticated caller, or ANONYMOUS when auth is off (or the route is open)."""
    user = connection.scope.get("user")
    return user if isinstance(user, Caller) else ANONYMOUS
