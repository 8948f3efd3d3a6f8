"""Writes on project configuration (SPEC §4.5): log sources and notification channels.

Callers pass a project they already resolved for the caller (with its
permission checked), or a row fetched through `apps.projects.selectors`, so
every write stays inside one tenant. The rules of a channel target and of
log-source settings are enforced here, whoever the caller is.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.audit.services import Action, record_event
from apps.projects.models import Channel, LogSource, Project
from apps.projects.selectors import ProjectLike
from core import throttling
from core.errors import NotFound, ValidationFailed
from core.net import ASCII_HOST_NAME, is_public_address
from core.queries import refuse_when_full
from core.validation import clean_name, has_hidden_characters

MAX_SETTINGS_BYTES = 10 * 1024
MAX_SETTINGS_KEYS = 50
MAX_SETTINGS_DEPTH = 8
MAX_TARGET_LENGTH = 500
#: Per project: `GET /v1/config` answers them all (SPEC §4.5), so each list is bounded. A
#: secret key with `config:write` created 255 a second, and 9,700 of 10 KB made one answer
#: 101 MB and its worker 560 MB (found by the DoS audit).
MAX_LOG_SOURCES = 100
MAX_CHANNELS = 100
#: Per organization: nothing else bounded them (no throttle, and only operators delete a
#: project), so one owner's script could add projects without end, each with its own 100
#: log sources and channels and its keys. Ten times the largest tenant the tests model
#: (1,346 projects in the large-tenant audit).
MAX_PROJECTS_PER_ORGANIZATION = 10_000

_SLACK_WEBHOOK = re.compile(r"https://hooks\.slack\.com/[A-Za-z0-9_\-/]+")
_SLACK_CHANNEL = re.compile(r"#[a-z0-9][a-z0-9_\-]{0,79}")
_validate_email = EmailValidator()
_validate_https_url = URLValidator(schemes=["https"])
#: Why an email target whose mailbox (before the @) is not ASCII is refused.
NON_ASCII_MAILBOX = (
    "Write the part before @ in ASCII: mail to a non-ASCII mailbox needs SMTPUTF8, which "
    "many mail servers do not offer."
)


def _settings_error(message: str) -> ValidationFailed:
    return ValidationFailed({"settings": [message]})


def clean_log_source_settings(value: Any) -> dict[str, Any]:
    """A JSON object of at most 50 keys and 10 KB (compact UTF-8), that both databases store.

    Refused anywhere inside: nesting deeper than 8, NUL characters (PostgreSQL
    `jsonb` cannot hold them) and non-finite numbers (not JSON).
    """
    if not isinstance(value, dict):
        raise _settings_error("Must be a JSON object.")
    if len(value) > MAX_SETTINGS_KEYS:
        raise _settings_error(f"At most {MAX_SETTINGS_KEYS} keys.")
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_SETTINGS_DEPTH:
                raise _settings_error(f"Nested at most {MAX_SETTINGS_DEPTH} levels deep.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            if "\x00" in item:
                raise _settings_error("Text may not contain NUL characters.")
        elif isinstance(item, float) and not math.isfinite(item):
            raise _settings_error("Numbers must be finite.")
    try:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _settings_error("Text must be valid Unicode.") from exc
    if size > MAX_SETTINGS_BYTES:
        raise _settings_error(f"At most {MAX_SETTINGS_BYTES} bytes as JSON.")
    return value


#: Names for a network's inside (RFC 6761 `localhost`, RFC 6762 `.local`, RFC 8375
#: `home.arpa`, ICANN's private-use `.internal`, and the customary `localdomain`).
_INSIDE_NAMES = ("localhost", "localdomain", "local", "internal", "home.arpa")


def _is_private_host(host: str) -> bool:
    """Whether `host` names the inside of a network: a non-public address, in any of its
    spellings (the webhooks' SSRF guard's own test, `core.net.is_public_address`: NAT64,
    6to4 and IPv4-mapped forms included, found by the SSRF audit), or an inside name. A name
    is not resolved: SigSentry never sends to a channel, and what it resolves to where the
    configuration is used is that network's own answer."""
    host = host.rstrip(".")  # the root label: `localhost.` and `127.0.0.1.` are the same hosts
    if any(host == name or host.endswith("." + name) for name in _INSIDE_NAMES):
        return True
    literal = host.strip("[]")
    try:
        ipaddress.ip_address(literal.split("%", 1)[0])
    except ValueError:
        return False  # a name (`2130706433`, `0x7f.1` and `127.1` never pass as URLs)
    return not is_public_address(literal)


def clean_channel_target(kind: str, target: Any) -> str:
    """The channel's destination, checked for its kind.

    * email: one email address, in ASCII (an internationalized domain in its xn-- form);
    * slack: an incoming-webhook URL on `https://hooks.slack.com/` or a `#channel-name`;
    * webhook: an `https://` URL without credentials, whose host is ASCII (an
      internationalized name in its xn-- form) and not a non-public address nor a name
      for a network's inside (`_is_private_host`).
    """
    if not isinstance(target, str) or not target.strip():
        raise ValidationFailed({"target": ["A target is required."]})
    target = target.strip()
    if len(target) > MAX_TARGET_LENGTH:
        raise ValidationFailed({"target": [f"At most {MAX_TARGET_LENGTH} characters."]})
    if has_hidden_characters(target):  # shown in the configuration as it is
        raise ValidationFailed(
            {"target": ["Must not contain spaces, control or invisible characters."]}
        )
    if kind == Channel.Kind.EMAIL:
        # Django's validator refuses a non-ASCII mailbox (before the @) without saying why,
        # and takes any script after it (found by an email audit): the domain is reached
        # through IDNA, which reads U+3002 as a dot and differs between IDNA 2003 and 2008,
        # so it is asked for in its xn-- form, as the webhook targets' hosts are.
        mailbox, at, domain = target.rpartition("@")
        if at and not mailbox.isascii():
            raise ValidationFailed({"target": [NON_ASCII_MAILBOX]})
        try:
            _validate_email(target)
        except DjangoValidationError as exc:
            raise ValidationFailed({"target": ["Must be an email address."]}) from exc
        if not domain.isascii():
            raise ValidationFailed({"target": [ASCII_HOST_NAME]})
    elif kind == Channel.Kind.SLACK:
        if not (_SLACK_WEBHOOK.fullmatch(target) or _SLACK_CHANNEL.fullmatch(target)):
            raise ValidationFailed(
                {"target": ["Must be a https://hooks.slack.com/ URL or a #channel-name."]}
            )
    elif kind == Channel.Kind.WEBHOOK:
        try:
            _validate_https_url(target)
        except DjangoValidationError as exc:
            raise ValidationFailed({"target": ["Must be an https:// URL."]}) from exc
        parts = urlsplit(target)
        if parts.username is not None or parts.password is not None:
            raise ValidationFailed({"target": ["Must not contain a user name or password."]})
        # IDNA, which whoever sends to the channel applies, reads U+3002, U+FF0E and U+FF61
        # as "." and folds full-width letters: "metadata.google\u3002internal" passed as a
        # public name and is reached as metadata.google.internal (found by a Unicode
        # audit); and IDNA 2003 and 2008 reach two domains for "straße". As webhooks ask.
        if not (parts.hostname or "").isascii():
            raise ValidationFailed({"target": [ASCII_HOST_NAME]})
        if _is_private_host((parts.hostname or "").lower()):
            raise ValidationFailed({"target": ["Must be a public address."]})
    else:
        raise ValidationFailed({"kind": [f"One of: {', '.join(Channel.Kind.values)}."]})
    return target


def _locked(model: type[LogSource] | type[Channel], pk: Any) -> Any:
    """The row, locked for this transaction; NOT_FOUND if it was deleted meanwhile."""
    row = model.objects.select_for_update().filter(pk=pk).first()
    if row is None:
        raise NotFound()
    return row


def _apply(row: LogSource | Channel, changes: dict[str, Any]) -> None:
    """Write the fields whose values `changes` changes, and `updated_at` with them; a
    change to nothing writes nothing (`updatedAt` says when the row last changed)."""
    changed = [field for field, value in changes.items() if getattr(row, field) != value]
    if not changed:
        return
    for field in changed:
        setattr(row, field, changes[field])
    row.updated_at = timezone.now()
    row.save(update_fields=[*changed, "updated_at"])


def create_log_source(
    *, project: ProjectLike, name: str, kind: str, settings: Any = None
) -> LogSource:
    settings = clean_log_source_settings({} if settings is None else settings)
    with transaction.atomic():
        refuse_when_full(
            Project.objects.filter(pk=project.id),
            LogSource.objects.filter(project_id=project.id),
            MAX_LOG_SOURCES,
            "name",
            f"At most {MAX_LOG_SOURCES} log sources per project.",
        )
        return LogSource.objects.create(
            project_id=project.id, name=name, kind=kind, settings=settings
        )


def update_log_source(*, log_source: LogSource, changes: dict[str, Any]) -> LogSource:
    """Apply `changes` (any of name, kind, settings); `updated_at` moves if one changed."""
    if "settings" in changes:
        changes = changes | {"settings": clean_log_source_settings(changes["settings"])}
    with transaction.atomic():
        log_source = _locked(LogSource, log_source.pk)
        _apply(log_source, changes)
    return log_source


def delete_log_source(*, log_source: LogSource) -> None:
    log_source.delete()


def create_channel(*, project: ProjectLike, name: str, kind: str, target: Any) -> Channel:
    target = clean_channel_target(kind, target)
    with transaction.atomic():
        refuse_when_full(
            Project.objects.filter(pk=project.id),
            Channel.objects.filter(project_id=project.id),
            MAX_CHANNELS,
            "name",
            f"At most {MAX_CHANNELS} channels per project.",
        )
        return Channel.objects.create(project_id=project.id, name=name, kind=kind, target=target)


def update_channel(*, channel: Channel, changes: dict[str, Any]) -> Channel:
    """Apply `changes` (any of name, kind, target); the target is re-checked for the kind.

    Changing the kind alone re-checks the stored target, so a channel never
    holds a target of another kind. The row is locked so that two concurrent
    updates (one of the kind, one of the target) cannot combine into one.
    """
    with transaction.atomic():
        channel = _locked(Channel, channel.pk)
        if "kind" in changes or "target" in changes:
            kind = changes.get("kind", channel.kind)
            target = changes.get("target", channel.target)
            changes = changes | {"target": clean_channel_target(kind, target)}
        _apply(channel, changes)
    return channel


def delete_channel(*, channel: Channel) -> None:
    channel.delete()


def create_project(
    *, actor: Any, organization: Any, name: Any, request: HttpRequest | None = None
) -> Project:
    """A new project of `organization`; the caller has checked that `actor` may manage it.
    400 VALIDATION_ERROR on `name` once the organization has MAX_PROJECTS_PER_ORGANIZATION
    (creations at the same moment wait for each other, so the bound is exact); 429
    RATE_LIMITED past `create_project_user` an hour, across organizations."""
    name = clean_name(name)
    throttling.enforce("create_project_user", str(actor.pk))
    with transaction.atomic():
        refuse_more_projects(organization.pk)
        project = Project.objects.create(organization=organization, name=name)
        record_project_created(project, actor=actor, request=request)
    return project


def refuse_more_projects(organization_id: Any, *, adding: int = 1, field: str = "name") -> None:
    """Inside the transaction that adds `adding` projects to the organization: 400
    VALIDATION_ERROR on `field` when they would pass MAX_PROJECTS_PER_ORGANIZATION. Its row
    is locked (`refuse_when_full`) until the end of the transaction, so additions at the
    same moment wait for each other and the bound is exact (the API, the dashboard and
    the operators' admin)."""
    refuse_when_full(
        # apps.orgs sits above this app (imports run one way): its model, by the relation
        Project._meta.get_field("organization").related_model.objects.filter(pk=organization_id),
        Project.objects.filter(organization_id=organization_id),
        MAX_PROJECTS_PER_ORGANIZATION - (adding - 1),  # full once `adding` more would pass it
        field,
        f"At most {MAX_PROJECTS_PER_ORGANIZATION:,} projects per organization.",
    )


def record_project_created(project: Project, *, actor: Any, request: HttpRequest | None) -> None:
    """The `project.created` audit event, in the caller's transaction (the API, the
    dashboard and the operators' admin)."""
    _record_project_event(Action.PROJECT_CREATED, project, actor, request, {})


def record_project_renamed(
    project: Project, *, before: str, actor: Any, request: HttpRequest | None
) -> None:
    """The `project.updated` audit event of a rename, in the caller's transaction (only
    the operators' admin renames projects)."""
    details = {"fields": ["name"], "before": {"name": before}, "after": {"name": project.name}}
    _record_project_event(Action.PROJECT_UPDATED, project, actor, request, details)


def record_project_deleted(project: Project, *, actor: Any, request: HttpRequest | None) -> None:
    """The `project.deleted` audit event, in the transaction that deletes the project (only
    the operators' admin deletes projects): the organization's log keeps it."""
    _record_project_event(Action.PROJECT_DELETED, project, actor, request, {})


def _record_project_event(
    action: str, project: Project, actor: Any, request: HttpRequest | None, details: dict
) -> None:
    record_event(
        action=action,
        organization_id=project.organization_id,
        project_id=project.id,
        actor_user=actor,
        target_type="project",
        target_id=project.id,
        target_label=project.name,
        request=request,
        details=details,
    )
