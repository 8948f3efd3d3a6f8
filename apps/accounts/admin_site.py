"""The operators' admin site (SPEC §6, §7): Django's, with two guards no admin can skip.

* Its login goes through `authenticate_login`, the same throttles as the
  dashboard and `/v1/auth/login` (per normalized account and per client, one
  mechanism: `core.throttling`). Staff accounts can revoke anyone's keys, so
  their password must not be open to guessing. Past a limit the page answers
  `429` with `Retry-After`, and the right password does not get in either.
* Every ModelAdmin registered on it refuses list-filter lookups on secret
  fields (`core.admin.SecretLookupGuardMixin`), including the ones Django and
  third-party apps register.

Installed through `SigSentryAdminConfig` (in INSTALLED_APPS instead of
`django.contrib.admin`), so `admin.site` is this site everywhere.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from apps.accounts.services import authenticate_login, end_admin_sessions
from apps.accounts.views import throttled_message
from core.admin import SecretLookupGuardMixin
from core.errors import InvalidCredentials, RateLimited


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """Django's admin login form, checking credentials through `authenticate_login`."""

    #: Seconds to wait, when this attempt was refused by a throttle.
    retry_after: int | None = None

    def clean(self):
        email = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if email is not None and password:
            try:
                self.user_cache = authenticate_login(
                    email=email, password=password, request=self.request
                )
            except RateLimited as exc:
                self.retry_after = exc.retry_after
                raise ValidationError(throttled_message(exc), code="throttled") from exc
            except InvalidCredentials as exc:
                raise self.get_invalid_login_error() from exc
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class SigSentryAdminSite(admin.AdminSite):
    login_form = ThrottledAdminLoginForm

    def login(self, request, extra_context=None):
        response = super().login(request, extra_context)
        form = response.context_data.get("form") if isinstance(response, TemplateResponse) else None
        retry_after = getattr(form, "retry_after", None)
        if retry_after is not None:
            response.status_code = 429
            response["Retry-After"] = str(retry_after)
        return response

    def logout(self, request, extra_context=None):
        """Django's logout, which ends every admin session of the operator: a signed cookie
        copied before it would open the admin for the rest of its 12 hours otherwise
        (an admin audit replayed one)."""
        if request.method == "POST" and request.user.is_authenticated:
            end_admin_sessions(request.user)
        return super().logout(request, extra_context)

    def password_change(self, request, extra_context=None):
        """The account page's: Django's own checked the current password without the login
        throttles and told no one (an admin audit guessed 40 times)."""
        return redirect("account")

    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, SecretLookupGuardMixin):
            admin_class = type(
                admin_class.__name__,
                (SecretLookupGuardMixin, admin_class),
                {"__module__": admin_class.__module__},
            )
        super().register(model_or_iterable, admin_class, **options)
