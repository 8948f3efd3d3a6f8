"""What Django's error reports show (`DEFAULT_EXCEPTION_REPORTER_FILTER`): the DEBUG page
and any mail to ADMINS."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class ReportFilterHidingUrls(SafeExceptionReporterFilter):
    """Django's filter, hiding URLs too: a `REDIS_URL` or a cache's `LOCATION` with a
    password was shown in clear on the DEBUG page (found by a configuration audit). Django's
    own list of names, and `URL|LOCATION`."""

    hidden_settings = re.compile(
        f"{SafeExceptionReporterFilter.hidden_settings.pattern}|URL|LOCATION", flags=re.I
    )
