"""The client's address, behind the proxies the deployment names, and nobody else's say-so.

X-Forwarded-For (and -Proto, -Host) are believed only on a request that arrives from an address in
TRUSTED_PROXIES: anyone who reaches the app directly writes those headers as they please."""

from __future__ import annotations

import hashlib
import ipaddress
import logging

from django.conf import settings
from django.core.checks import Error, register

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

log = logging.getLogger(__name__)

# Headers only a trusted proxy may set; from anyone else they are dropped before anything reads them.
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                     "HTTP_X_FORWARDED_PORT")
# What one person, or one organisation, usually holds: a home or office is given one IPv4 address (often
# behind NAT with its neighbours in the same /24) or an IPv6 /48 to /64. Limits per address count requests
# per network of this size, so that a stranger elsewhere cannot spend the allowance of the owner's network.
# IPv6 by the /32 an ISP is allocated, not the /48 anyone is given free with a tunnel: a stranger must not
# reach the ceiling across networks from a handful of tunnels (the cost: see README, "Rate limits").
NETWORK_PREFIX = {4: 24, 6: 32}
# One host: an IPv4 address, or the IPv6 /64 a single host is given (it may send from any address in it).
HOST_PREFIX = {4: 32, 6: 64}


def _networks(values) -> list[Network]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            continue
    return networks


def trusted_proxies() -> list[Network]:
    """TRUSTED_PROXIES as networks; what is not one is left out (and refused by check proxy.E002)."""
    return _networks(settings.TRUSTED_PROXIES)


def _address(value: str) -> Address | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    # A dual-stack listener reports an IPv4 client as ::ffff:a.b.c.d.
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: Address | None, proxies: list[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def from_trusted_proxy(request) -> bool:
    """Whether the request came straight from one of TRUSTED_PROXIES (its peer address, as the server saw it)."""
    return _trusted(_address(request.META.get("REMOTE_ADDR", "")), trusted_proxies())


# Where a hop that names no address is put: IPv4's reserved 240.0.0.0/4, which no client is ever given and no
# allow list names, each token at an address of its own (and in a /24 of its own, for the limits per network).
UNNAMED_HOPS = ipaddress.ip_network("240.0.0.0/4")
_unnamed_logged = False


def _hop(value: str) -> Address | None:
    """The address in one X-Forwarded-For hop: a bare address, or one with the port some proxies add
    (`203.0.113.7:51234`, `[2001:db8::1]:443`); None when it names no address (`unknown`, `unix:`)."""
    value = value.strip()
    address = _address(value)
    if address is not None:
        return address
    if value.startswith("["):
        host, closed, port = value[1:].partition("]")
        if closed and (not port or (port[0] == ":" and port[1:].isdigit())):
            return _address(host)
        return None
    host, colon, port = value.rpartition(":")
    address = _address(host) if colon and port.isdigit() else None
    # Only IPv4 takes a port unbracketed: in an IPv6 address the last group would read as one.
    return address if address is not None and address.version == 4 else None


def _unnamed(token: str) -> Address:
    """A stand-in address for a hop a trusted proxy wrote that names no address: the same for the same token,
    so that such clients are limited apart from everyone else and from each other (a proxy that writes an
    obfuscated name per client), never all as the proxy itself."""
    global _unnamed_logged
    if not _unnamed_logged:
        _unnamed_logged = True
        log.warning("an X-Forwarded-For hop from a trusted proxy names no address; such clients are told apart "
                    "by what it says", extra={"hop": token[:64]})
    digest = int.from_bytes(hashlib.sha256(token.encode()).digest()[:4], "big")
    return UNNAMED_HOPS[digest % UNNAMED_HOPS.num_addresses]


def client_address(request) -> Address | None:
    """The address of whoever sent the request: the connection's own, unless it is a trusted proxy; then
    X-Forwarded-For is walked from the right (each proxy appends the address it saw), past every
    trusted proxy, to the first address that is not one. Anything left of that was written by the client
    and proves nothing. A hop a trusted proxy wrote that names no address stands for its client by an
    address of UNNAMED_HOPS."""
    proxies = trusted_proxies()
    seen = _address(request.META.get("REMOTE_ADDR") or "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if not _trusted(seen, proxies) or not forwarded.strip():
        return seen
    for hop in reversed(forwarded.split(",")):
        address = _hop(hop)
        if address is None:
            return _unnamed(hop.strip())
        seen = address
        if not _trusted(seen, proxies):
            return seen
    return seen


def client_ip(request) -> str:
    """The client's address as text, for django-ratelimit (RATELIMIT_IP_META_KEY) and /metrics."""
    address = client_address(request)
    return str(address) if address is not None else "0.0.0.0"


def _network(request, prefixes: dict[int, int]) -> str:
    address = client_address(request) or ipaddress.ip_address("0.0.0.0")
    return str(ipaddress.ip_network(f"{address}/{prefixes[address.version]}", strict=False))


def client_network(request) -> str:
    """The network (NETWORK_PREFIX) the client's address is in, as text."""
    return _network(request, NETWORK_PREFIX)


def client_host(request) -> str:
    """The client as one host (HOST_PREFIX), as text: what per-client limits count, so that an IPv6 host
    cannot start afresh from each of its addresses."""
    return _network(request, HOST_PREFIX)


class ForwardedHeadersMiddleware:
    """Drops X-Forwarded-* from a request that did not come through a trusted proxy, before Django's
    SECURE_PROXY_SSL_HEADER and USE_X_FORWARDED_HOST (or anything else) can believe them."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if not _trusted(_address(request.META.get("REMOTE_ADDR") or ""), trusted_proxies()):
            for header in FORWARDED_HEADERS:
                request.META.pop(header, None)
        return self.get_response(request)


@register()
def proxies_are_named(app_configs, **kwargs) -> list[Error]:
    errors = []
    if settings.TRUSTED_PROXY:
        errors.append(Error(
            "TRUSTED_PROXY is no longer read: a count of proxies let anyone who reached the app directly "
            "choose the address its rate limits and /metrics see.",
            hint="Remove TRUSTED_PROXY and set TRUSTED_PROXIES to the addresses or networks of your proxies, "
                 "e.g. TRUSTED_PROXIES=10.0.0.5 or 10.0.0.0/8,127.0.0.1.", id="proxy.E001"))
    refused = [value for value in settings.TRUSTED_PROXIES if not _networks([value])]
    if refused:
        errors.append(Error(f"TRUSTED_PROXIES holds what is not an address or network: {', '.join(refused)}.",
                            hint="Give addresses or networks separated by commas, e.g. 10.0.0.0/8,127.0.0.1.",
                            id="proxy.E002"))
    return errors
