"""Base classes for `/v1` views: authentication, pagination, headers.

* `ApiView`: any authenticated endpoint (JSON only, errors through one handler).
* `ManagementView`: JWT users only; API keys get KEY_MANAGEMENT_FORBIDDEN.

The core imports no app. The project-scoped base view, which needs the access
policy, is `apps.orgs.scoped_api.ProjectScopedView`, beside the policy it uses.
What happens after the response for a key (`lastUsedAt`, legacy headers) is the
key app's middleware.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from collections.abc import Collection
from datetime import UTC, timedelta
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import DateTimeField
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import MethodNotAllowed, ParseError
from rest_framework.exceptions import NotFound as DrfNotFound
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import KeyManagementForbidden, ValidationFailed
from core.principal import Principal
from core.validation import check_fields


class JsonOnlyNegotiation(BaseContentNegotiation):
    """The API answers JSON whatever `Accept` says (no 406 outside SPEC §3).

    Bodies are parsed only when sent as `application/json`: anything else is a
    400, so a cross-site form post can never smuggle a JSON body in.
    """

    def select_parser(self, request, parsers):
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class JsonParser(JSONParser):
    """DRF's JSON parser, but JSON nested deeper than `MAX_JSON_DEPTH` is a 400.

    No body of the API nests more than a few levels. Deeper than Python's decoder follows,
    it raises RecursionError (not a ValueError), which DRF would let through as a 500; and
    a body the decoder took (~300 levels and more) overflowed the recursive walk below
    (found by an HTTP audit: a 500 on every JSON endpoint, login included). Body size is
    bounded by DATA_UPLOAD_MAX_MEMORY_SIZE, since DRF reads JSON through `request.body`.
    A NUL character or a lone surrogate (`"\\ud800"`, which JSON allows and UTF-8 cannot
    encode) in any string is a VALIDATION_ERROR naming the top-level field: no database
    can store either, and neither may surface as a 500.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        # JSON is UTF-8 (RFC 8259 §8.1). DRF decodes by the charset the Content-Type names:
        # UTF-7 ("+ADw-script+AD4-" is "<script>") and EBCDIC bodies got past filters that
        # read the bytes (found by a Unicode audit).
        charset = (parser_context or {}).get("encoding") or "utf-8"
        if codecs.lookup(charset).name != "utf-8":
            raise ParseError("JSON is read as UTF-8 only: send charset=utf-8, or no charset.")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("The JSON is nested too deeply.") from exc
        except ParseError as exc:
            # DRF's message is the decoder's text (`Expecting ',' delimiter: line 1 column
            # 9 (char 8)`, `'utf-8' codec can't decode byte 0xff ...`): said for people.
            cause = exc.__context__
            raise ParseError(not_json_message(cause)) from cause
        try:
            field = _unstorable_field(data)
        except _TooDeep:
            raise ParseError("The JSON is nested too deeply.") from None
        if field is not None:
            raise ValidationFailed(
                {field: ["Null characters and unpaired surrogates are not allowed."]}
            )
        return data


def not_json_message(error: BaseException | None) -> str:
    """Why a body is not JSON, for its sender: where the decoder stopped, or that its bytes
    are not UTF-8; never the decoder's own words."""
    if isinstance(error, json.JSONDecodeError):
        return f"The request body is not valid JSON (line {error.lineno}, column {error.colno})."
    if isinstance(error, UnicodeDecodeError):
        return "The request body is not valid UTF-8."
    return "The request body is not valid JSON."


#: Arrays and objects inside one another, at most: the API's bodies nest two or three.
MAX_JSON_DEPTH = 32


class _TooDeep(Exception):
    pass


def _unstorable_field(data: Any) -> str | None:
    """The top-level field whose value holds a NUL or a lone surrogate; `body` for anywhere
    else. _TooDeep past `MAX_JSON_DEPTH`."""
    if isinstance(data, dict):
        for key, value in data.items():
            if _unstorable(key, 1):
                return "body"
            if _unstorable(value, 1):
                return key
        return None
    return "body" if _unstorable(data, 0) else None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(value: Any, depth: int) -> bool:
    """Whether a string anywhere in `value` (at `depth`) holds a NUL or a lone surrogate;
    _TooDeep for a container deeper than MAX_JSON_DEPTH. A loop, not recursion: the walk
    cannot run out of stack, whatever the decoder accepted. Strings are checked where they
    are met and only non-empty containers wait their turn: a review measured the first loop,
    which queued every element, at six times the decoder's time on a body of empty objects."""
    search = _UNSTORABLE.search
    if isinstance(value, str):
        return search(value) is not None
    if not isinstance(value, dict | list):
        return False
    if depth >= MAX_JSON_DEPTH:
        raise _TooDeep
    pending = [(value, depth)]
    while pending:
        container, level = pending.pop()
        if isinstance(container, dict):
            if any(search(key) is not None for key in container):
                return True
            container = container.values()
        for child in container:
            if isinstance(child, str):
                if search(child) is not None:
                    return True
            elif isinstance(child, dict | list):
                if level + 1 >= MAX_JSON_DEPTH:
                    raise _TooDeep
                if child:
                    pending.append((child, level + 1))
    return False


class ApiView(APIView):
    content_negotiation_class = JsonOnlyNegotiation
    parser_classes = [JsonParser]

    @property
    def principal(self) -> Principal:
        return self.request.user

    def handles(self, method: str) -> bool:
        """Whether this view has a handler for `method` (HEAD: GET's, set up by Django)."""
        name = method.lower()
        return name in self.http_method_names and hasattr(self, name)

    def check_throttles(self, request):
        # A method the view has no handler for is 405 whatever the limits say: refused
        # before them, it spends none of a key's rate limit (DRF would throttle, then 405).
        if not self.handles(request.method):
            raise MethodNotAllowed(request.method)
        super().check_throttles(request)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


class ManagementView(ApiView):
    """Programmatic keys never manage keys, organizations, projects or members.

    Refused at DRF's permission step, before the throttles: a key's own rate limit is
    not spent on a request it may never make, and its answer is this 403, not a 429.
    """

    def check_permissions(self, request):
        super().check_permissions(request)
        if self.principal.key is not None:
            raise KeyManagementForbidden()


class Pagination(CursorPagination):
    """Cursor pagination: `{"results": [...], "next": <url or null>}`, `?limit=` ≤ 100."""

    page_size = 50
    max_page_size = 100
    page_size_query_param = "limit"
    ordering = ("-created_at", "-id")
    cursor_query_param = "cursor"

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationFailed({"limit": [f"A whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    def paginate_queryset(self, queryset, request, view=None):
        self.model = queryset.model
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DrfNotFound, DjangoValidationError) as exc:
            # Not base64, or a position that is not a time: both are a cursor we never made.
            raise ValidationFailed({"cursor": ["Invalid cursor."]}) from exc

    def decode_cursor(self, request):
        """DRF's cursor, refused (as not base64 is) when it says nothing (`?cursor=`, or
        what decodes to no field, `!!!!`: no link of ours is the first page's) or its
        position is what no column holds: a NUL, or a time with an offset beyond ±14:00
        (PostgreSQL refused the query) or outside years 1 to 9999 in UTC (SQLite's
        conversion overflowed: a 500)."""
        cursor = super().decode_cursor(request)
        if cursor is None:
            return None
        position = cursor.position
        if cursor == Cursor(offset=0, reverse=False, position=None) or (
            position is not None
            and (
                "\x00" in position or (self._ordered_by_time() and not _storable_instant(position))
            )
        ):
            raise DrfNotFound(self.invalid_cursor_message)
        return cursor

    def _ordered_by_time(self) -> bool:
        try:
            field = self.model._meta.get_field(self.ordering[0].lstrip("-"))
        except FieldDoesNotExist:  # an annotation (a member's email, an organization's name)
            return False
        return isinstance(field, DateTimeField)

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "format": "uri", "nullable": True},
            },
        }


def _storable_instant(text: str) -> bool:
    """False for a time with an offset beyond ±14:00 or not of whole minutes (PostgreSQL
    refused `+05:30:15.5` in the query) or outside years 1 to 9999 in UTC; True for any
    other text (Django's own parse refuses what is not a time). Read by the parser the
    query's field uses, `parse_datetime`: `fromisoformat` refuses spellings it reads
    (`0001-1-01T00:00:00+14:00`, found by a fuzzing audit: a 500 on SQLite)."""
    try:
        moment = parse_datetime(text)
    except ValueError:
        return True
    if moment is None:
        return True
    offset = moment.utcoffset()
    if offset is None:
        return True
    if abs(offset) > timedelta(hours=14) or offset % timedelta(minutes=1):
        return False
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


@functools.cache
def field_names(serializer_class: type) -> tuple[str, ...]:
    """The fields of a request body's serializer (the shape the OpenAPI document shows), as
    `json_object` takes them: read once per class, not built again on every request (a
    serializer's fields are deep copies, 20-50 µs a request)."""
    return tuple(serializer_class().fields)


def json_object(request, fields: Collection[str]) -> dict[str, Any]:
    """The JSON object body of a request (an empty body counts as `{}`), of `fields` only:
    `object_body`; a PATCH must name at least one of them."""
    return object_body(request.data, fields, at_least_one=request.method == "PATCH")


def object_body(data: Any, fields: Collection[str], *, at_least_one: bool = False) -> dict:
    """`data` (a parsed request body) if it is a JSON object of `fields` only; else
    VALIDATION_ERROR: on `body` for what is not an object, on each member that is not among
    `fields` (`core.validation.check_fields`: every body that writes is closed, and the
    OpenAPI document says so, `core.openapi.add_request_keywords`), and on `body` for an
    empty one when `at_least_one` (a PATCH that names nothing changes nothing)."""
    if not isinstance(data, dict):
        raise ValidationFailed(
            {"body": ["Send a JSON object."]}, "The request body must be a JSON object."
        )
    check_fields(data, fields)
    if at_least_one and not data:
        raise ValidationFailed({"body": [f"Send at least one of: {', '.join(fields)}."]})
    return data


def paginate(view: ApiView, queryset, serialize, ordering: tuple[str, ...] = ()) -> Response:
    """One page of `queryset`, newest first unless `ordering` names other fields of its rows
    (the first one, a field or an annotation, is what the cursor holds)."""
    paginator = Pagination()
    if ordering:
        paginator.ordering = ordering
    page = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response([serialize(item) for item in page])
