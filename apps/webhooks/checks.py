"""`check --deploy`: the development switch that turns the webhook URL rules off."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def check_private_webhooks(app_configs=None, **kwargs) -> list[Error]:
    """WEBHOOKS_ALLOW_PRIVATE is for development and tests (the worker delivers to a
    receiver on 127.0.0.1); in production any organization admin could make the worker
    POST to the metadata service, the database's network or localhost. It started without
    a word (found by a configuration audit)."""
    if not settings.WEBHOOKS_ALLOW_PRIVATE:
        return []
    return [
        Error(
            "WEBHOOKS_ALLOW_PRIVATE is on: webhooks may target loopback, private and "
            "link-local addresses (cloud metadata included), over plain http://.",
            hint="Unset WEBHOOKS_ALLOW_PRIVATE in production: it is for development and tests.",
            id="sigsentry.E009",
        )
    ]
