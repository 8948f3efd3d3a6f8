"""Key pages: Project → SDK Keys, Project → API Keys, Organization → API Keys.

`actions` holds the views (the list and its forms: mint, revoke, roll, replace,
origins, limits, the organization's lifetime policy); `page` renders the page they
share; `inventory` the collection as a CSV file. A key's own page (usage and
forensics) is `apps.apikeys.usage_views`.
"""

from apps.apikeys.views.actions import (
    key_collection,
    key_limits,
    key_origins,
    key_policy,
    key_replace,
    key_revoke,
    key_roll,
)
from apps.apikeys.views.inventory import key_collection_export

__all__ = [
    "key_collection",
    "key_collection_export",
    "key_limits",
    "key_origins",
    "key_policy",
    "key_replace",
    "key_revoke",
    "key_roll",
]
