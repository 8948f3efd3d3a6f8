"""Print the requests the usage API counts on the load tests' two keys (valid, revoked).

    DJANGO_SETTINGS_MODULE=bench.settings DATABASE_URL=... REDIS_URL=... \
        python bench/usage_total.py <credentials file>

What `GET …/keys/{keyId}/usage` answers: the stored hours and what still waits in Redis.
The credentials file is bench/load_fixtures.py's (name=value lines); nothing is printed
but the number.
"""

from __future__ import annotations

import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
django.setup()

from apps.apikeys import keyformat  # noqa: E402
from apps.apikeys.models import ApiKey  # noqa: E402
from apps.apikeys.usage.answer import key_usage  # noqa: E402

credentials = dict(line.split("=", 1) for line in Path(sys.argv[1]).read_text().split())
print(
    sum(
        key_usage(ApiKey.objects.get(digest=keyformat.digest(credentials[name])), "hour")["total"][
            "requests"
        ]
        for name in ("valid", "revoked")
    )
)
