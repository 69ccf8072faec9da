"""Checks run at start-up (and by `manage.py check --deploy`): settings the site must not run without."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.checks import Error, register

from alerts.webhooks import auth_settings, configured_esp, webhook_problems


@register()
def webhooks_need_a_secret(app_configs, **kwargs) -> list[Error]:
    """Exactly the settings Anymail reads to authenticate the configured ESP's tracking webhook, and a
    shared secret's form and strength."""
    esp = configured_esp()
    if esp is None:
        return []
    return [Error(
        f"{problem}: a forged bounce could silence any address." if "anyone could" not in problem else f"{problem}.",
        hint=f"Set {auth_settings(esp)}; make a password with "
             "python -c 'import secrets; print(secrets.token_urlsafe(24))'.",
        id="alerts.E001",
    ) for problem in webhook_problems(esp)]


@register()
def metrics_addresses_are_valid(app_configs, **kwargs) -> list[Error]:
    refused = []
    for allowed in settings.METRICS_ALLOWED_IPS:
        try:
            ipaddress.ip_network(allowed.strip(), strict=False)
        except ValueError:
            refused.append(allowed)
    if not refused:
        return []
    return [Error(f"METRICS_ALLOWED_IPS holds what is not an address or network: {', '.join(refused)}.",
                  hint="Give addresses or networks separated by commas, e.g. 10.0.0.0/8,192.0.2.7.", id="alerts.E002")]


@register()
def retention_keeps_what_is_still_needed(app_configs, **kwargs) -> list[Error]:
    # Follows retire by the age of their answer's event (matches waiting for a digest keep theirs anyway).
    if settings.FOLLOW_WINDOW_DAYS < settings.RETAIN_MATCHED_EVENTS_DAYS:
        return []
    return [Error(f"RETAIN_MATCHED_EVENTS_DAYS ({settings.RETAIN_MATCHED_EVENTS_DAYS}) must be longer than "
                  f"FOLLOW_WINDOW_DAYS ({settings.FOLLOW_WINDOW_DAYS}): events still needed would be deleted.",
                  id="alerts.E003")]
