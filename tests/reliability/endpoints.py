"""Every `/v1` URL pattern, enumerated from the URLconf, with its methods and path parameters.

Tests iterate over this so that an endpoint added later is covered without
editing them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

METHODS = ("get", "post", "put", "patch", "delete")
#: Served without the database (the OpenAPI document and its viewer).
STATIC_PATHS = ("/v1/schema", "/v1/docs")
PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass(frozen=True)
class Endpoint:
    route: str  # "/v1/organizations/<uuid:org_id>/projects"
    name: str | None
    view_class: type | None
    methods: tuple[str, ...]

    @property
    def params(self) -> list[str]:
        return [m.group("name") for m in PARAM.finditer(self.route)]

    @property
    def is_static(self) -> bool:
        return self.route.startswith(STATIC_PATHS)

    @property
    def is_public(self) -> bool:
        """Needs no credential (login, signup, refresh, leak reports)."""
        from rest_framework.permissions import AllowAny

        if self.view_class is None:
            return False
        permissions = list(getattr(self.view_class, "permission_classes", []))
        return (
            not getattr(self.view_class, "authentication_classes", [None])
            or not permissions
            or any(cls is AllowAny for cls in permissions)
        )

    def path(self, values: Mapping[str, str] | None = None) -> str:
        """The route with each parameter filled from `values` (by name) or a random UUID."""
        values = values or {}

        def fill(match: re.Match) -> str:
            return str(values.get(match.group("name"), uuid.uuid4()))

        return PARAM.sub(fill, self.route)

    def __str__(self) -> str:
        return self.route


def _walk(patterns, prefix: str) -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        route = prefix + str(entry.pattern).lstrip("^").rstrip("$")
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, route)
        else:
            yield route, entry


def api_endpoints(include_static: bool = False) -> list[Endpoint]:
    found: dict[str, Endpoint] = {}
    for route, pattern in _walk(get_resolver().url_patterns, "/"):
        if not route.startswith("/v1/"):
            continue
        view_class = getattr(pattern.callback, "view_class", None) or getattr(
            pattern.callback, "cls", None
        )
        methods = tuple(m for m in METHODS if view_class is not None and hasattr(view_class, m))
        endpoint = Endpoint(route=route, name=pattern.name, view_class=view_class, methods=methods)
        if endpoint.is_static and not include_static:
            continue
        found.setdefault(route, endpoint)
    return sorted(found.values(), key=lambda e: e.route)


def param_values(route: str, ids: Mapping[str, str]) -> dict[str, str]:
    """Real ids for a route's parameters, chosen by parameter name and the segment before it.

    `ids` maps kinds ("organization", "project", "key", "user", "analysis",
    "log_source", "channel") to an existing object's id.
    """
    values: dict[str, str] = {}
    segments = route.strip("/").split("/")
    for index, segment in enumerate(segments):
        match = PARAM.fullmatch(segment)
        if not match:
            continue
        name = match.group("name").lower()
        before = segments[index - 1].lower() if index else ""
        kind = _kind_of(name, before)
        if kind in ids:
            values[match.group("name")] = ids[kind]
    return values


def _kind_of(name: str, before: str) -> str | None:
    hints = f"{name} {before}"
    for kind, words in (
        ("log_source", ("log-source", "log_source", "logsource", "source")),
        ("channel", ("channel",)),
        ("key", ("key",)),
        ("user", ("user", "member")),
        ("analysis", ("analys",)),
        ("project", ("project",)),
        ("organization", ("org",)),
    ):
        if any(word in hints for word in words):
            return kind
    return None
