"""Factories for the whole suite (factory_boy)."""

from __future__ import annotations

import secrets

import factory
from django.utils import timezone

from apps.accounts.models import User
from apps.analyses.models import Analysis
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyScope, KeyType
from apps.apikeys.services import mint_key
from apps.orgs.models import Membership, Organization
from apps.projects.models import Project
from apps.webhooks.models import EventType
from apps.webhooks.services import CreatedWebhook, create_webhook
from core.permissions import ALL_PERMISSIONS, Role

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    # An account whose owner confirmed its address, as most are; `email_confirmed_at=None`
    # for one that signed up a moment ago.
    email_confirmed_at = factory.LazyFunction(timezone.now)
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Project {n}")


def make_key(
    kind: KeyKind,
    *,
    project: Project | None = None,
    organization: Organization | None = None,
    permissions=None,
    actor: User | None = None,
    **kwargs,
):
    """Mint a key through the real service; returns (api_key, plaintext)."""
    if kind is KeyKind.ORGANIZATION:
        organization = organization or (project.organization if project else OrganizationFactory())
        project = None
    else:
        project = project or ProjectFactory(organization=organization or OrganizationFactory())
        organization = project.organization
    if permissions is None and kind is not KeyKind.PUBLIC:
        permissions = list(ALL_PERMISSIONS)
    minted = mint_key(
        actor=actor,
        kind=kind,
        organization=organization,
        project=project,
        name=kwargs.pop("name", "test key"),
        permissions=permissions,
        **kwargs,
    )
    return minted.api_key, minted.key


def bulk_secret_keys(project: Project, count: int, *, each=None, **fields) -> list[ApiKey]:
    """`count` secret key rows of `project` in one statement (minting is throttled per
    organization, and slow): names `bulk 000`…, digests of no real key. `fields` apply to
    every row, `each(i)` (a dict) to row i."""
    return ApiKey.objects.bulk_create(
        ApiKey(
            **{
                "organization": project.organization,
                "project": project,
                "type": KeyType.SECRET,
                "scope": KeyScope.PROJECT,
                "name": f"bulk {i:03d}",
                "prefix": f"ss_secret_{i:08d}",
                "digest": keyformat.digest(f"bulk-{project.id}-{i}"),
                "permissions": ["analysis:read"],
            }
            | fields
            | (each(i) if each else {})
        )
        for i in range(count)
    )


def make_legacy_key(
    project: Project,
    *,
    plaintext: str | None = None,
    name: str = "Old integration",
    permissions=None,
    **fields,
) -> tuple[ApiKey, str]:
    """A legacy key row as the import writes it (digest and prefix only); (api_key, plaintext)."""
    plaintext = plaintext or "tb_" + secrets.token_hex(16)
    api_key = ApiKey.objects.create(
        organization=project.organization,
        project=project,
        type=KeyType.SECRET,
        scope=KeyScope.PROJECT,
        legacy=True,
        name=name,
        prefix=keyformat.display_prefix(plaintext),
        digest=keyformat.digest(plaintext),
        permissions=list(ALL_PERMISSIONS) if permissions is None else permissions,
        **fields,
    )
    return api_key, plaintext


def make_webhook(
    organization: Organization, actor: User, url: str = "https://8.8.8.8/hooks/sigsentry"
) -> CreatedWebhook:
    """A webhook for every event, through the real service (a public address: no setting)."""
    return create_webhook(
        actor=actor, organization=organization, url=url, events=list(EventType.values)
    )


def make_analysis(
    project: Project, *, author: User, title: str = "t", input: str = "i"
) -> Analysis:
    """An analysis in `project` created by the user `author`, recorded as the API records it."""
    return Analysis.objects.create(
        project=project,
        title=title,
        input=input,
        created_by_type="user",
        created_by_user=author,
        created_by_label=author.email,
    )
