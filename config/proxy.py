"""The client's address, for rate limits, behind the proxies the deployment says it has."""

import ipaddress

from django.conf import settings


def client_ip(request) -> str:
    """With TRUSTED_PROXY=N, the address the outermost of our N proxies saw (the N-th from the right of
    X-Forwarded-For); anything left of it was written by the client and proves nothing."""
    hops = settings.TRUSTED_PROXY
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if len(forwarded) >= hops:
            candidate = forwarded[-hops]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return request.META.get("REMOTE_ADDR") or "0.0.0.0"
