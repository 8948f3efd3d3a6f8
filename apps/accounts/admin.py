"""Operators' admin for users and their sessions (SPEC §2.4, §6, §4.13).

Deactivating a user here — the action or unticking "active" — goes through
`deactivate_user`, which ends every session of the user at once. A password set
here ends the user's sessions too (their tokens carry the old password's
fingerprint, and the sessions are closed with the reason recorded).

simplejwt's own admin pages for its token blacklist are removed: they list and
search every refresh token's jti, which the session admin keeps hidden.
The admin's login asks staff with two-factor on for their code too
(`TwoFactorAdminLoginForm`); wrong codes are throttled as on the dashboard.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from apps.accounts import mail, twofactor
from apps.accounts.admin_site import ThrottledAdminLoginForm
from apps.accounts.emails import normalize_email, refuse_ambiguous
from apps.accounts.models import AuthSession, User
from apps.accounts.services import (
    deactivate_user,
    end_admin_sessions,
    end_session,
    forget_in_admin_history,
    lift_account_limits,
    record_operator_change,
    store_password,
)
from apps.audit.services import Action, UserAction, forget_account, log_user_change
from apps.orgs.admin import (
    delete_membership,
    owned_by_no_one_active,
    protect_last_owners,
    refuse_if_last_owners,
)
from apps.orgs.models import Membership
from core.admin import ReadOnlyAdminMixin, changed_columns, without_read_only
from core.errors import InvalidCredentials, RateLimited


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        email = normalize_email(refuse_ambiguous(self.cleaned_data.get("email") or ""))
        if User.objects.filter(email=email).exists():
            raise ValidationError("A user with this email already exists.")
        return email


class UserChangeForm(DjangoUserChangeForm):
    #: Whether the address given is another than the stored one (set by `clean_email`).
    new_address = False

    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self) -> str:
        email = self.cleaned_data.get("email") or ""
        if "email" in self.changed_data:  # an address stored before a rule stays editable
            refuse_ambiguous(email)
        email = normalize_email(email)
        if User.objects.filter(email=email).exclude(pk=self.instance.pk).exists():
            raise ValidationError("A user with this email already exists.")
        self.new_address = email != self.instance.email  # not another case of the same
        if self.new_address:  # nobody has shown it is theirs
            self.instance.email_confirmed_at = None
            self.instance.email_code_digest, self.instance.email_code_expires_at = "", None
        return email


class PasswordChangeEndsSessionsForm(AdminPasswordChangeForm):
    """The admin's "set password" form, saving as the account page does (`store_password`):
    every session of the user ends, and they are told by email. `UserAdmin` records it."""

    def save(self, commit: bool = True) -> User:
        user = super().save(commit=False)
        if commit:
            store_password(user=user, hashed=user.password, action=UserAction.PASSWORD_SET)
        return user


class TwoFactorAdminLoginForm(ThrottledAdminLoginForm):
    """Email and password (throttled, `ThrottledAdminLoginForm`), then for staff with
    two-factor on a TOTP or recovery code.

    The code is checked by the same service as the dashboard's login (one use
    per code, wrong codes counted per account and per client).
    """

    code = forms.CharField(
        label="Two-factor code",
        required=False,
        max_length=64,
        help_text="Only if two-factor authentication is on for your account.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "off"}),
    )

    def clean(self):
        cleaned = super().clean()
        user = self.get_user()
        if user is None or not twofactor.is_enabled(user):
            return cleaned
        code = (self.cleaned_data.get("code") or "").strip()
        if not code:
            raise ValidationError(
                "Enter the code of your authenticator app (or a recovery code).",
                code="two_factor_required",
            )
        try:
            twofactor.check_second_factor(user=user, code=code, request=self.request)
        except RateLimited as exc:
            self.retry_after = exc.retry_after
            raise ValidationError("Too many attempts. Try again later.", code="throttled") from exc
        except InvalidCredentials as exc:
            raise ValidationError("The two-factor code is not valid.", code="invalid_code") from exc
        return cleaned


#: What only a superuser grants, to anyone: staff and superuser status, groups and
#: permissions. Found by an admin audit: staff allowed to change users made themselves
#: superusers.
GRANTS = ("is_staff", "is_superuser", "groups", "user_permissions")


#: A new address and what it resets (`UserChangeForm.clean_email`): nobody showed it is
#: theirs yet. The address is saved even when the field's text is as it was drawn: a stored
#: spelling the normalization now writes otherwise (its change is audited and mailed).
WITH_A_NEW_ADDRESS = ("email", "email_confirmed_at", "email_code_digest", "email_code_expires_at")


def form_saved(form) -> list[str]:
    """The columns the user form saves (`changed_columns`), a new address's resets with it.
    A save of the whole row wrote back what other writers had changed meanwhile: the admin
    session counter over a deactivation's (a review: a copied admin cookie worked again
    after the account was reactivated), the password hash over one the user had just
    changed (an admin audit: the old password worked again), a confirmation or code."""
    saved = set(changed_columns(form))
    return sorted(saved | set(WITH_A_NEW_ADDRESS) if form.new_address else saved)


def _guarded(request, user: User | None) -> bool:
    """Whether `user` is another operator than the one asking, who is no superuser: such
    staff change and help members, never an operator (they could set a superuser's
    password or turn off their two-factor, and log in as them)."""
    return (
        user is not None
        and not request.user.is_superuser
        and (user.is_staff or user.is_superuser)
        and user.pk != request.user.pk
    )


def _user_pk(quoted: str) -> Any:
    """The user id of an admin URL, or None when it is no id (the page answers 404)."""
    try:
        return uuid.UUID(unquote(quoted))
    except ValueError:
        return None


admin.site.login_form = TwoFactorAdminLoginForm
admin.site.login_template = "admin/sigsentry_login.html"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = PasswordChangeEndsSessionsForm
    list_display = (
        "email",
        "is_active",
        "is_staff",
        "is_superuser",
        "two_factor",
        "date_joined",
        "last_login",
    )
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("email",)
    ordering = ("email",)
    readonly_fields = ("last_login", "date_joined", "email_confirmed_at")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined", "email_confirmed_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )
    actions = ("deactivate_users", "turn_off_two_factor", "lift_limits")

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if request.user.is_superuser else (*fields, *GRANTS)

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and not _guarded(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not _guarded(request, obj)

    def user_change_password(self, request, id, form_url=""):
        """Django's page, in one transaction with the event of a password it set: the user
        is told by email (the form), their organizations in their audit logs."""
        target = User.objects.filter(pk=_user_pk(id))
        with transaction.atomic():
            before = target.values_list("password", flat=True).first()
            response = super().user_change_password(request, id, form_url)
            user = target.first()
            if user is not None and before is not None and user.password != before:
                record_operator_change(
                    Action.MEMBER_PASSWORD_SET, user, actor_user=request.user, request=request
                )
        return response

    @admin.display(boolean=True, description="Two-factor")
    def two_factor(self, obj: User) -> bool:
        device = getattr(obj, "totp_device", None)  # a missing row raises an AttributeError
        return device is not None and device.confirmed_at is not None

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("totp_device")

    def save_model(self, request, obj: User, form, change: bool) -> None:
        # The deactivation first: it locks the memberships, then the account, the order of
        # every other writer (a member change waiting for them then sees the account gone).
        if change and "is_active" in form.changed_data and not obj.is_active:
            deactivate_user(user=obj, actor_user=request.user, request=request)
            self._warn_of_ownerless(request, [obj])
        old_email = User.objects.filter(pk=obj.pk).values_list("email", flat=True).first()
        if change:
            obj.save(update_fields=form_saved(form))
        else:
            super().save_model(request, obj, form, change)
        if change and any(grant in form.changed_data for grant in GRANTS):
            log_user_change(UserAction.RIGHTS_CHANGED, obj.pk)  # for a restore (`UserAction`)
        if change and "is_active" in form.changed_data and obj.is_active:
            record_operator_change(
                Action.MEMBER_REACTIVATED, obj, actor_user=request.user, request=request
            )
        if change and old_email is not None and old_email != obj.email:
            # Whoever reads the new address can reset the password: not silent (an audit).
            record_operator_change(
                Action.MEMBER_EMAIL_CHANGED,
                obj,
                actor_user=request.user,
                request=request,
                details={"from": old_email, "to": obj.email},
            )
            mail.send_email_changed(user=obj, old=old_email, when=timezone.now())

    @admin.action(
        description="Deactivate selected users (ends their sessions)", permissions=["change"]
    )
    def deactivate_users(self, request, queryset) -> None:
        users = self._members_only(request, queryset)
        for user in users:
            deactivate_user(user=user, actor_user=request.user, request=request)
        self.message_user(
            request, f"Deactivated {len(users)} user(s); their sessions ended.", messages.SUCCESS
        )
        self._warn_of_ownerless(request, users)

    def _warn_of_ownerless(self, request, users: list[User]) -> None:
        """Name the organizations a deactivation left with no owner who can act (an admin
        audit: the member pages refuse to leave one so, the deactivation said nothing)."""
        ownerless = owned_by_no_one_active(user.pk for user in users)
        if ownerless:
            names = ", ".join(organization.name for organization in ownerless)
            self.message_user(
                request,
                f"No owner of {names} can act now: add an owner there, or reactivate one.",
                messages.WARNING,
            )

    @admin.action(
        description="Turn off two-factor (the user lost their device)", permissions=["change"]
    )
    def turn_off_two_factor(self, request, queryset) -> None:
        users = self._members_only(request, queryset)
        for user in users:
            twofactor.reset_for_operator(
                user=user,
                record=lambda user=user: record_operator_change(
                    Action.MEMBER_TWO_FACTOR_RESET, user, actor_user=request.user, request=request
                ),
            )
        self.message_user(
            request, f"Two-factor turned off for {len(users)} user(s).", messages.SUCCESS
        )

    @admin.action(
        description="Lift login and reset limits (locked out by others' failed attempts)",
        permissions=["change"],
    )
    def lift_limits(self, request, queryset) -> None:
        users = self._members_only(request, queryset)
        for user in users:
            lift_account_limits(user)
        self.message_user(
            request,
            f"Login, two-factor and reset limits lifted for {len(users)} user(s); the limits "
            "of the clients that tried stay.",
            messages.SUCCESS,
        )

    def _members_only(self, request, queryset) -> list[User]:
        """The selected users this operator may act on (`_guarded`), naming the others."""
        users = list(queryset)
        kept = [user for user in users if not _guarded(request, user)]
        if len(kept) < len(users):
            skipped = ", ".join(user.email for user in users if user not in kept)
            self.message_user(
                request,
                f"Only a superuser acts on other operators: skipped {skipped}.",
                messages.ERROR,
            )
        return kept

    def delete_model(self, request, obj: User) -> None:
        self.delete_queryset(request, User.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        """Each membership leaves its organization's audit log a `member.removed` first; then
        the events keep no address of the account (`forget_account`), nor the admin's
        history (`forget_in_admin_history`) or its emails' retries."""
        with transaction.atomic():
            memberships = list(Membership.objects.filter(user__in=queryset).select_related("user"))
            refuse_if_last_owners(memberships)
            for membership in memberships:
                delete_membership(request, membership)
            user_ids = list(queryset.values_list("pk", flat=True))
            for user_id in user_ids:
                forget_account(user_id)  # as a deletion on the account page does
            forget_in_admin_history(user_ids)  # this deletion's entry, written before, too
            mail.withdraw_retries_once_deleted(user_ids)
            queryset.delete()

    def get_deleted_objects(self, objs, request):
        users = list(objs)
        memberships = Membership.objects.filter(user__in=users)
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(
            users, request
        )
        # A user's sessions go with them: the session admin is read-only (no one deletes a
        # session by hand), which must not make every user who ever logged in undeletable.
        perms_needed = without_read_only(perms_needed, self.admin_site)
        # An operator's history in the admin (Django's LogEntry) would go with them, and one
        # operator could erase another's trail (found by an integrity audit): deactivate.
        acted = set(LogEntry.objects.filter(user__in=users).values_list("user_id", flat=True))
        protected = list(protected) + [
            f"{user} (made changes in the admin, whose history stays: deactivate instead)"
            for user in users
            if user.pk in acted
        ]
        deleted = (to_delete, model_count, perms_needed, protected)
        return protect_last_owners(memberships, deleted)


@admin.register(AuthSession)
class AuthSessionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only. The refresh jti and the password fingerprint are never shown."""

    list_display = (
        "id",
        "user",
        "created_at",
        "last_seen_at",
        "expires_at",
        "ended_at",
        "end_reason",
        "ip",
    )
    list_filter = ("end_reason", ("ended_at", admin.EmptyFieldListFilter))
    search_fields = ("user__email", "=id", "ip")
    list_select_related = ("user",)
    fields = (
        "id",
        "user",
        "created_at",
        "expires_at",
        "last_refreshed_at",
        "last_seen_at",
        "ended_at",
        "end_reason",
        "ip",
        "user_agent",
    )
    readonly_fields = fields
    ordering = ("-created_at",)
    actions = ("end_sessions",)

    def has_end_permission(self, request) -> bool:
        return request.user.has_perm("accounts.change_authsession")

    @admin.action(description="End selected sessions (log them out)", permissions=["end"])
    def end_sessions(self, request, queryset) -> None:
        """Of members, and of operators for a superuser only, as the user actions (`_guarded`):
        staff allowed to end sessions logged every superuser out of the admin, over and over
        (an admin audit)."""
        selected = list(queryset.filter(ended_at__isnull=True).select_related("user"))
        sessions = [session for session in selected if not _guarded(request, session.user)]
        if len(sessions) < len(selected):
            skipped = sorted({s.user.email for s in selected if _guarded(request, s.user)})
            self.message_user(
                request,
                f"Only a superuser ends other operators' sessions: skipped {', '.join(skipped)}.",
                messages.ERROR,
            )
        by_user: dict[int, list[AuthSession]] = {}
        for session in sessions:
            by_user.setdefault(session.user_id, []).append(session)
        for of_user in by_user.values():
            with transaction.atomic():
                for session in of_user:
                    end_session(session, AuthSession.EndReason.LOGOUT)
                end_admin_sessions(of_user[0].user)
                record_operator_change(
                    Action.MEMBER_SESSIONS_ENDED,
                    of_user[0].user,
                    actor_user=request.user,
                    request=request,
                    details={"sessions": len(of_user)},
                )
        self.message_user(request, f"Ended {len(sessions)} session(s).", messages.SUCCESS)


for token_model in (OutstandingToken, BlacklistedToken):
    if admin.site.is_registered(token_model):
        admin.site.unregister(token_model)


if admin.site.is_registered(Group):
    admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(DjangoGroupAdmin):
    """Groups hold permissions, so only superusers see or change them: staff allowed to
    change groups joined one that held every permission (an admin audit)."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser
