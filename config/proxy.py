"""The client's address, behind the proxies the deployment names, and nobody else's say-so.

X-Forwarded-For (and -Proto, -Host) are believed only on a request that arrives from an address in
TRUSTED_PROXIES: anyone who reaches the app directly writes those headers as they please."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.checks import Error, register

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Headers only a trusted proxy may set; from anyone else they are dropped before anything reads them.
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                     "HTTP_X_FORWARDED_PORT")
# What one person, or one organisation, usually holds: a home or office is given one IPv4 address (often
# behind NAT with its neighbours in the same /24) or an IPv6 /48 to /64. Limits per address count requests
# per network of this size, so that a stranger elsewhere cannot spend the allowance of the owner's network.
NETWORK_PREFIX = {4: 24, 6: 48}
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


def client_address(request) -> Address | None:
    """The address of whoever sent the request: the connection's own, unless it is a trusted proxy; then
    X-Forwarded-For is walked from the right (each proxy appends the address it saw), past every
    trusted proxy, to the first address that is not one. Anything left of that was written by the client
    and proves nothing; a hop that is not an address ends the walk at the proxy that passed it on."""
    proxies = trusted_proxies()
    seen = _address(request.META.get("REMOTE_ADDR") or "")
    if not _trusted(seen, proxies):
        return seen
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _address(hop)
        if address is None:
            return seen
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
