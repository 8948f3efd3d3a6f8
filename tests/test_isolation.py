"""The suite's own hygiene: what one group of tests switches off stays switched off there."""

from __future__ import annotations

import asyncio

import pytest
from django.core.exceptions import SynchronousOnlyOperation

from apps.accounts.models import User

pytestmark = pytest.mark.django_db


def test_orm_calls_from_a_running_event_loop_are_refused_outside_the_browser_tests():
    """The browser tests allow them while Chromium runs (tests/browser/conftest.py); no
    other test may run with Django's async-safety check off."""

    async def count_users() -> int:
        return User.objects.count()

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(count_users())
