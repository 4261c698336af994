"""Where the server may send callbacks: tasks.execute webhooks and A2A push notifications.

A caller names the URL, and the server POSTs to it from inside its own network: unchecked,
that lets any caller make the server send requests to internal services (server-side
request forgery). The policy:

- Always refused: a scheme other than http or https, and hosts that are, or resolve to,
  link-local addresses (169.254.0.0/16, where clouds serve instance credentials, and
  fe80::/10), unspecified addresses (0.0.0.0, ::) or multicast, unless a CIDR rule of
  FLOWLEDGER_CALLBACK_HOSTS names them.
- FLOWLEDGER_CALLBACK_HOSTS (comma-separated; unset: any other host): only hosts it names
  may be called. An entry is a host name (`hooks.example.com`), a wildcard for its
  subdomains (`*.example.com`), or an address or network (`10.1.2.3`, `10.0.0.0/8`,
  `::1`); a host name also passes when every address it resolves to is in a listed
  network.

A URL is checked when it is given (the request is refused with -32602 naming the field,
before anything is stored) and again before each delivery, then with the host resolved
(a name that resolves to a refused address is not called). The check and httpx's own
connection resolve the name apart: a DNS server that answers differently the second time
could still steer one request; an egress proxy or firewall is the complete answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from application.config import ConfigError

ENV = "FLOWLEDGER_CALLBACK_HOSTS"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _never(address: Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_link_local or address.is_unspecified or address.is_multicast


@dataclass(frozen=True)
class CallbackPolicy:
    """`names`: exact host names and `.suffix` wildcards; `networks`: listed addresses and
    networks. Both empty: any host but the never-called ones."""

    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @property
    def restricted(self) -> bool:
        return bool(self.names or self.networks)

    @classmethod
    def parse(cls, text: str | None) -> CallbackPolicy:
        names: set[str] = set()
        networks: list[Network] = []
        for entry in (e.strip().lower() for e in (text or "").split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            host = entry[2:] if entry.startswith("*.") else entry
            if not host or any(c in host for c in "/:@*?# ") or host.startswith("."):
                raise ConfigError(
                    f"{ENV}: {entry!r} is not a host name, *.domain, address or network"
                )
            names.add("." + host if entry.startswith("*.") else host)
        return cls(frozenset(names), tuple(networks))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CallbackPolicy:
        return cls.parse((os.environ if environ is None else environ).get(ENV))

    # -- checks ---------------------------------------------------------------------------
    def refuses(self, url: str) -> str | None:
        """Why the server will not call `url` (None: it may, pending the resolved check)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return "must be an http or https URL"
        host = (parts.hostname or "").lower()
        if not host:
            return "has no host"
        address = _address(host)
        if address is not None:
            return self._address_refused(address, host)
        if self.restricted and not self._name_listed(host) and not self.networks:
            return f"host {host} is not one of {ENV}"
        return None

    async def refuses_resolved(self, url: str) -> str | None:
        """`refuses`, then the addresses the host resolves to (a name that does not resolve
        is left to the delivery's own error)."""
        refused = self.refuses(url)
        if refused is not None:
            return refused
        host = (urlsplit(url).hostname or "").lower()
        if _address(host) is not None:
            return None
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError):
            return None
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found}
        listed = self._name_listed(host)
        for address in sorted(addresses, key=str):
            if listed and not _never(address):
                continue
            why = self._address_refused(address, host)
            if why is not None:
                return f"{why} (it resolves to {address})" if str(address) != host else why
        return None

    async def accepts(self, url: str) -> bool:
        """For a2a-sdk's push-URL hooks: the URL passes the static check."""
        return self.refuses(url) is None

    async def accepts_resolved(self, url: str) -> bool:
        return await self.refuses_resolved(url) is None

    def _name_listed(self, host: str) -> bool:
        return host in self.names or any(n.startswith(".") and host.endswith(n) for n in self.names)

    def _address_refused(self, address: Address, host: str) -> str | None:
        listed = any(address in network for network in self.networks)
        if listed:
            return None
        if _never(address):
            return f"host {host} is a link-local, unspecified or multicast address"
        if self.restricted:
            return f"host {host} is not one of {ENV}"
        return None


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
