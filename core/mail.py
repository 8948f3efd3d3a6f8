"""Email plumbing shared by the apps that send mail (the worker, and account emails after
the response)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend


class UnconfiguredEmailBackend(BaseEmailBackend):
    """Production without `EMAIL_URL`: every send fails loudly, so nothing is marked sent.

    The worker counts and logs the failure and tries again on its next round, so
    reminders go out once an operator sets `EMAIL_URL`.
    """

    def send_messages(self, email_messages):
        if not email_messages:
            return 0
        raise ImproperlyConfigured("EMAIL_URL is not set: cannot send email.")
