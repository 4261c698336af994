"""The callback policy (webhooks, A2A push): link-local, unspecified and multicast hosts are
never called unless a listed network names them; with FLOWLEDGER_CALLBACK_HOSTS, only the
hosts it names; names are checked again as resolved."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from application.config import ConfigError
from interfaces.rpc.callbacks import ENV, CallbackPolicy

OPEN = CallbackPolicy()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "must be an http or https URL"),
        ("file:///etc/passwd", "must be an http or https URL"),
        ("http:///nohost", "has no host"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[::ffff:169.254.169.254]/hook", "link-local"),
        ("http://0.0.0.0:8080/hook", "unspecified"),
        ("http://[::]/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
    ],
)
def test_never_called_whatever_the_setting(url: str, reason: str) -> None:
    refused = OPEN.refuses(url)
    assert refused is not None
    assert reason in refused


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "https://hooks.example.com/a?b=c",
        "http://[::1]/x",
        "http://10.1.2.3/",
    ],
)
def test_unset_any_other_host_may_be_called(url: str) -> None:
    assert OPEN.refuses(url) is None


def test_listed_hosts_wildcards_and_networks() -> None:
    policy = CallbackPolicy.parse(" hooks.example.com, *.corp.example , 10.0.0.0/8, ::1 ,")
    assert policy.refuses("https://hooks.example.com/h") is None
    assert policy.refuses("https://HOOKS.example.com/h") is None  # names are case-blind
    assert policy.refuses("https://a.b.corp.example/h") is None
    assert policy.refuses("http://10.200.0.1:8080/h") is None
    assert policy.refuses("http://[::1]/h") is None
    for url in ("http://127.0.0.1/h", "http://192.168.1.1/h", "http://[::2]/h"):
        assert policy.refuses(url) == f"host {url.split('/')[2].strip('[]')} is not one of {ENV}"
    # a name not listed may still resolve into a listed network: decided when resolved
    assert policy.refuses("https://other.example.org/h") is None
    only_names = CallbackPolicy.parse("hooks.example.com")
    assert only_names.refuses("https://corp.example/h") == f"host corp.example is not one of {ENV}"
    assert only_names.refuses("https://evil-hooks.example.com/h") is not None
    link_local = CallbackPolicy.parse("169.254.0.0/16")  # listed on purpose: then allowed
    assert link_local.refuses("http://169.254.169.254/x") is None


@pytest.mark.parametrize("entry", ["http://x", "a/b", "user@host", "*.", "*", ".example.com"])
def test_a_bad_entry_is_a_config_error_naming_the_variable(entry: str) -> None:
    with pytest.raises(ConfigError, match=ENV):
        CallbackPolicy.from_env({ENV: f"ok.example.com,{entry}"})


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Answers for names (the loop resolves through socket.getaddrinfo in a thread)."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
                for a in answers[host]
            ]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_names_are_checked_as_resolved(dns: dict[str, list[str]]) -> None:
    dns["metadata.example"] = ["169.254.169.254"]
    dns["inside.example"] = ["10.1.1.1", "192.168.0.9"]
    dns["hooks.example.com"] = ["203.0.113.5"]
    dns["sneaky.example.com"] = ["203.0.113.5", "fe80::1"]
    listed = CallbackPolicy.parse("hooks.example.com,sneaky.example.com,10.0.0.0/8")

    async def check() -> None:
        metadata = await OPEN.refuses_resolved("http://metadata.example/x")
        assert metadata is not None
        assert "resolves to 169.254.169.254" in metadata
        assert await OPEN.refuses_resolved("http://inside.example/x") is None
        assert await listed.refuses_resolved("https://hooks.example.com/x") is None
        sneaky = await listed.refuses_resolved("https://sneaky.example.com/x")
        assert sneaky is not None
        assert "fe80::1" in sneaky  # a listed name still never reaches link-local
        inside = await listed.refuses_resolved("http://inside.example/x")
        assert inside is not None
        assert "192.168.0.9" in inside  # every address must be in a listed network
        assert await listed.accepts("http://10.9.9.9/x")
        assert not await listed.accepts_resolved("http://metadata.example/x")
        # a name that does not resolve is left to the delivery's own error
        assert await OPEN.refuses_resolved("http://no-such-host.invalid/x") is None

    asyncio.run(check())
