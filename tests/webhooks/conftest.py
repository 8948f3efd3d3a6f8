from __future__ import annotations

import pytest

from apps.webhooks import services
from apps.webhooks.models import EventType
from tests.outbound import Receiver


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def make_webhook(settings, owner, organization):
    """A webhook of the fixture organization (loopback allowed, as in development)."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True

    def make(url: str, events=None, org=None, actor=None):
        return services.create_webhook(
            actor=actor or owner,
            organization=org or organization,
            url=url,
            events=events or list(EventType.values),
        )

    return make
