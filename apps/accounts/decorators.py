from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

from django.shortcuts import redirect


def login_required_page(view):
    """Dashboard pages need a session; otherwise /login/ with the way back remembered."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.principal is None:
            return redirect("/login/?" + urlencode({"next": request.get_full_path()}))
        return view(request, *args, **kwargs)

    return wrapper
