"""Prepare the load test's database and write its credentials to a file (never to the console).

Usage: ``python bench/load_fixtures.py OUT_FILE``; the database is
LOAD_DATABASE_URL (default postgres://root@127.0.0.1:5432/sigsentry_bench_load,
created here if missing; the name must contain "bench"). The database is
migrated and emptied, then gets one organization, project and owner with: a
secret key, a revoked secret key, a DRF token (for the peer view) and a JWT.
OUT_FILE (mode 600) receives ``name=value`` lines read by bench/wrk.lua.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"


def main(out: Path) -> None:
    from bench.db import LOAD_DATABASE_URL, database_url, ensure_database

    os.environ["DATABASE_URL"] = database_url("LOAD_DATABASE_URL", LOAD_DATABASE_URL)
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from apps.accounts.models import User
    from apps.accounts.services import start_session
    from apps.apikeys.keyformat import KeyKind
    from apps.apikeys.services import mint_key, revoke_key
    from apps.orgs.models import Membership, Organization
    from apps.projects.models import Project
    from core.permissions import ALL_PERMISSIONS, Role

    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    user = User.objects.create_user("load@example.com", secrets.token_urlsafe(16))
    organization = Organization.objects.create(name="Load Org")
    Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
    project = Project.objects.create(organization=organization, name="Load Project")

    def secret_key(name: str):
        return mint_key(
            actor=user,
            kind=KeyKind.SECRET,
            organization=organization,
            project=project,
            name=name,
            permissions=list(ALL_PERMISSIONS),
        )

    valid = secret_key("load valid")
    revoked = secret_key("load revoked")
    revoke_key(actor=user, api_key=revoked.api_key)
    values = {
        "valid": valid.key,
        "revoked": revoked.key,
        "garbage": "ss_secret_" + "x" * 38,
        "jwt": start_session(user).access,
        "drf_token": Token.objects.create(user=user).key,
    }
    out.touch(mode=0o600)
    out.write_text("".join(f"{name}={value}\n" for name, value in values.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
