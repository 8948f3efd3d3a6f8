"""Destructive dashboard actions are confirmed before they act (SPEC §5), with or without
JavaScript.

A destructive form (`<form data-confirm="…">`) posts to its action's URL. In a browser
with JavaScript, static/js/app.js asks the form's question and, once it is confirmed,
adds the marker field (`CONFIRM_FIELD`), so the action happens in one step. A POST
without the marker (no JavaScript, or sent any other way) changes nothing: the view
answers `confirmation_page`, which names what would be destroyed and offers a button
that posts the same fields again with the marker, and a Cancel link back.

    if not is_confirmed(request):
        return confirmation_page(request, Confirmation(...))
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def isolated(name: str) -> str:
    """`name` between U+2068 FIRST STRONG ISOLATE and U+2069 POP DIRECTIONAL ISOLATE, for a
    question that is plain text (a data-confirm attribute, which app.js shows as text; the
    page's heading): what `<bdi>` does in markup. A right-to-left name keeps its own order
    without pulling the prefix or the question mark into it, and a name stored before the
    name rules with an unclosed override (U+202E) reverses nothing after it (UAX #9 §6.3).
    The dashboard's templates write the same two characters as `&#x2068;` and `&#x2069;`."""
    return f"\u2068{name}\u2069"


#: The marker field of a confirmed destructive POST; static/js/app.js adds the same.
CONFIRM_FIELD = "confirmed"
CONFIRM_VALUE = "yes"


@dataclass(frozen=True)
class Confirmation:
    """What the confirmation page says and where its buttons lead."""

    #: The question, naming what is destroyed: "Revoke “CI” (ss_secret_ab12cd34…)?"
    question: str
    #: What happens then: "Anything using it stops working immediately."
    consequence: str
    #: The label of the button that acts: "Revoke key".
    action: str
    #: Where Cancel leads: the page the form was on.
    cancel_url: str
    #: That page's name, for the breadcrumb back to it.
    back_label: str
    irreversible: bool = True
    #: The fields of the original form the confirmation posts again (a list's page and
    #: filter): named, so no other value a form may hold is written into the page.
    carry: tuple[str, ...] = ()


def is_confirmed(request: HttpRequest) -> bool:
    return request.POST.get(CONFIRM_FIELD) == CONFIRM_VALUE


def confirmation_page(request: HttpRequest, confirmation: Confirmation) -> HttpResponse:
    """The page that asks before a destructive action: its form posts back to the same
    URL with the marker and the original form's fields named in `carry`."""
    carried = [(name, value) for name in confirmation.carry for value in request.POST.getlist(name)]
    response = render(
        request,
        "dashboard/confirm.html",
        {
            "confirmation": confirmation,
            "carried": carried,
            "confirm_field": CONFIRM_FIELD,
            "confirm_value": CONFIRM_VALUE,
        },
    )
    response["Cache-Control"] = "no-store"
    return response
