"""Shared pieces of the operators' admin."""

from __future__ import annotations

from django import forms
from django.apps import apps
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import DataError, transaction

from core.errors import ValidationFailed
from core.validation import clean_name


class ReadOnlyAdminMixin:
    """Operators see these rows but never add, edit or delete them in the admin.

    Used for records written only by the product's services (audit events,
    sessions, API keys, analyses): an edit here would bypass their rules.
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class NamedModelForm(forms.ModelForm):
    """An admin form of a model with a display `name` (organizations, projects): a name
    typed here follows the API's rules (`clean_name`): the admin saved a right-to-left
    override or a zero-width space that reached the dashboard and the notices' subjects
    (found by an integrity audit). A name left as it was is not judged again: a row
    stored before the rules must not block the rest of its page."""

    def clean_name(self):
        name = self.cleaned_data["name"]
        if "name" not in self.changed_data:
            return name
        try:
            return clean_name(name)
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.details["fields"]["name"]) from exc


def changed_columns(form) -> list[str]:
    """The columns a change form changed: what its save writes (`update_fields`), never the
    rest of the row it read, which another writer (the API, the account page) may have
    changed since (an admin audit: an operator's rename undid the organization's key
    policy an owner had just set, a user's save the password they had just changed)."""
    columns = {field.name for field in form.instance._meta.concrete_fields}
    return [name for name in form.changed_data if name in columns]


def without_read_only(perms_needed, admin_site) -> set:
    """A delete's `perms_needed` (the admin's `get_deleted_objects`) without the models
    `admin_site` shows read-only: no one deletes those rows by hand, but they go with
    what owns them (a deleted organization's keys, audit events and analyses), so they
    must not make their owner undeletable."""
    read_only = {
        model._meta.verbose_name
        for model in apps.get_models()
        if admin_site.is_registered(model)
        and isinstance(admin_site.get_model_admin(model), ReadOnlyAdminMixin)
    }
    return set(perms_needed) - read_only


#: Names of fields whose values are secrets or stand in for one: key digests, token ids
#: (`refresh_jti`, simplejwt's `jti`), password hashes and their fingerprints, webhook
#: secrets. Matched on every part of a lookup path, so `actor_key__digest` counts too.
SECRET_FIELD_SUFFIXES = ("digest", "jti", "fingerprint", "secret", "token")
SECRET_FIELD_PREFIXES = ("password",)


def is_secret_field(name: str) -> bool:
    return name.startswith(SECRET_FIELD_PREFIXES) or name.endswith(SECRET_FIELD_SUFFIXES)


def is_secret_lookup(lookup: str) -> bool:
    """Whether an admin query parameter like `digest__startswith` touches a secret field."""
    return any(is_secret_field(part) for part in lookup.split("__"))


#: Lookups no list filter makes, whose pattern a crafted query string sends to the
#: database to compile: `?name__regex=(` was a 500, on SQLite a 503 (read as an outage).
REFUSED_LOOKUPS = ("regex", "iregex")


class SecretLookupGuardMixin:
    """A list filter never reads a secret field, nor takes a pattern: such a lookup is a
    400 (SPEC §7).

    A filter narrows the list, so `?digest__startswith=a1` would let staff
    recover a digest one character at a time (Django's UserAdmin refuses
    `password` lookups for the same reason). Mixed into every ModelAdmin by
    the admin site (`apps.accounts.admin_site`), so no admin can forget it.
    """

    def lookup_allowed(self, lookup: str, value: str, request) -> bool:
        if is_secret_lookup(lookup) or lookup.rsplit("__", 1)[-1] in REFUSED_LOOKUPS:
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_changelist_instance(self, request):
        """Django's list, where a value the database cannot compare with a column
        (`?created_at__year=99999999999`, `?ip=x` on an address, a NUL) is the admin's
        own invalid-lookup answer (`?e=1`), not a 500 (an admin audit)."""
        try:
            with transaction.atomic():  # PostgreSQL's refusal aborts only this savepoint
                return super().get_changelist_instance(request)
        except (DataError, ValueError, OverflowError) as exc:
            raise IncorrectLookupParameters(exc) from exc
