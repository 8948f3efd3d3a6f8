"""The bench's data: an owner, an organization with two projects, and a credential per
variant, minted through the real services (the peers' through their own APIs).
Imported after `django.setup()` (auth_overhead.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from knox.models import AuthToken
from rest_framework.authtoken.models import Token
from rest_framework_api_key.models import APIKey
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import User
from apps.accounts.services import start_session
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyScope, KeyType
from apps.apikeys.services import mint_key, revoke_key
from apps.orgs.models import Membership, Organization
from apps.projects.models import Project
from core.permissions import ALL_PERMISSIONS, Role

SMALL_TABLE_ROWS = 20  # the bench's own keys, and filler up to this
FILLER_NAME = "bench filler"
#: An IP list the bench's client (127.0.0.1) is in, last; and an origin the SDK key allows.
BENCH_NETWORKS = ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "127.0.0.0/8"]
BENCH_ORIGIN = "https://bench.example"


@dataclass
class Credentials:
    organization: Organization
    project: Project
    secret: str
    guarded: str
    ip_listed: str
    limited: str
    sdk: str
    sdk_origins: str
    org_confined: str
    org: str
    legacy: str
    revoked: str
    revoked_limited: str
    burst: str
    jwt: str
    drf_token: str
    drf_api_key: str
    knox: str
    simplejwt: str


def make_legacy_key(project: Project) -> str:
    key = "tb_" + secrets.token_hex(16)
    ApiKey.objects.create(
        organization=project.organization,
        project=project,
        type=KeyType.SECRET,
        scope=KeyScope.PROJECT,
        name="bench legacy",
        prefix=keyformat.display_prefix(key),
        digest=keyformat.digest(key),
        permissions=list(ALL_PERMISSIONS),
        legacy=True,
    )
    return key


def filler_keys(organization: Organization, project: Project, count: int) -> list[ApiKey]:
    """Unusable keys with random digests, to grow the key table."""
    return [
        ApiKey(
            organization=organization,
            project=project,
            type=KeyType.SECRET,
            scope=KeyScope.PROJECT,
            name=FILLER_NAME,
            prefix="ss_secret_" + secrets.token_hex(4),
            digest=secrets.token_hex(32),
            permissions=list(ALL_PERMISSIONS),
        )
        for _ in range(count)
    ]


def make_credentials() -> Credentials:
    user = User.objects.create_user("bench@example.com", secrets.token_urlsafe(16))
    organization = Organization.objects.create(name="Bench Org")
    Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
    project = Project.objects.create(organization=organization, name="Bench Project")
    other_project = Project.objects.create(organization=organization, name="Bench Other")

    def mint(kind: KeyKind, **kwargs) -> str:
        permissions = None if kind is KeyKind.PUBLIC else list(ALL_PERMISSIONS)
        minted = mint_key(
            actor=user,
            kind=kind,
            organization=organization,
            project=None if kind is KeyKind.ORGANIZATION else project,
            name=f"bench {kind.name.lower()}",
            permissions=permissions,
            **kwargs,
        )
        return minted.key

    revoked = mint(KeyKind.SECRET)
    revoke_key(actor=user, api_key=ApiKey.objects.get(digest=keyformat.digest(revoked)))
    # Its refusal carries X-RateLimit-* headers: the window is read with the failure's count.
    revoked_limited = mint(KeyKind.SECRET, rate_limit={"requests": 100_000, "perSeconds": 86_400})
    revoke_key(actor=user, api_key=ApiKey.objects.get(digest=keyformat.digest(revoked_limited)))
    creds = Credentials(
        organization=organization,
        project=project,
        secret=mint(KeyKind.SECRET),
        # A rate limit the run never reaches, and an IP list the bench's client is in.
        guarded=mint(
            KeyKind.SECRET,
            rate_limit={"requests": 100_000, "perSeconds": 86_400},
            allowed_ips=BENCH_NETWORKS,
        ),
        # Each guardrail alone, for the cost of each check.
        ip_listed=mint(KeyKind.SECRET, allowed_ips=BENCH_NETWORKS),
        limited=mint(KeyKind.SECRET, rate_limit={"requests": 100_000, "perSeconds": 86_400}),
        sdk=mint(KeyKind.PUBLIC),
        sdk_origins=mint(KeyKind.PUBLIC, allowed_origins=[BENCH_ORIGIN, "https://app.example"]),
        org_confined=mint(
            KeyKind.ORGANIZATION, project_ids=[str(project.id), str(other_project.id)]
        ),
        org=mint(KeyKind.ORGANIZATION),
        legacy=make_legacy_key(project),
        revoked=revoked,
        revoked_limited=revoked_limited,
        burst=mint(KeyKind.SECRET),
        jwt=start_session(user).access,
        drf_token=Token.objects.create(user=user).key,
        drf_api_key=APIKey.objects.create_key(name="bench")[1],
        knox=AuthToken.objects.create(user)[1],
        simplejwt=str(AccessToken.for_user(user)),
    )
    missing = SMALL_TABLE_ROWS - ApiKey.objects.count()
    ApiKey.objects.bulk_create(filler_keys(organization, project, missing))
    return creds
