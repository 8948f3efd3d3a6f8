"""A password is the same in any Unicode form: checked and hashed as NFKC (NIST SP 800-63B
§5.1.1.2; `models.stabilized`). Django's password rules and its unknown-account timing are
fitted to that here, for every path that sets or checks one (the services, Django's admin
forms and commands, its login backend)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import get_password_validators
from django.core.exceptions import ValidationError

from apps.accounts.models import stabilized


class StabilizedPasswordRules:
    """Django's rules (`OPTIONS["validators"]`, as AUTH_PASSWORD_VALIDATORS lists them) run
    on the password as it is hashed: "password123" in full-width letters passed the
    common-password rule as typed and was stored as "password123", and five decomposed
    "é" counted ten characters for the length rule (found by a review)."""

    def __init__(self, validators: list[dict[str, Any]]) -> None:
        self.validators = get_password_validators(validators)

    def validate(self, password: str, user: Any = None) -> None:
        errors = []
        for validator in self.validators:
            try:
                validator.validate(stabilized(password), user)
            except ValidationError as error:
                errors.append(error)
        if errors:
            raise ValidationError(errors)

    def password_changed(self, password: str, user: Any = None) -> None:
        for validator in self.validators:
            getattr(validator, "password_changed", lambda *_: None)(stabilized(password), user)

    def get_help_text(self) -> str:
        return " ".join(validator.get_help_text() for validator in self.validators)


class AccountBackend(ModelBackend):
    """Django's ModelBackend, taking as long for an unknown email as for a known one.

    Django hashes the password once for an unknown email (#20760). A known account checks a
    password that NFKC changes twice when the first check fails (`User.check_password`: as
    stabilized, then as typed, for a hash made before passwords were stabilized): the
    unknown email then hashes it a second time too, or its quicker answer would tell
    (found by a review: ~420 against ~240 ms)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        user_model = get_user_model()
        account = username if username is not None else kwargs.get(user_model.USERNAME_FIELD)
        if (
            isinstance(password, str)
            and account is not None
            and stabilized(password) != password
            and not user_model._default_manager.filter(
                **{user_model.USERNAME_FIELD: account}
            ).exists()
        ):
            make_password(password)  # the known account's second hash
        return super().authenticate(request, username=username, password=password, **kwargs)
