"""The accounts' management commands that take the place of `django.contrib.auth`'s.

Django finds a command in the app listed first in INSTALLED_APPS, so this app is
listed before `django.contrib.auth` (`changepassword`). It is not `apps.accounts`
itself: listed that early, the accounts' admin module would load before simplejwt's
token-blacklist admin, and unregister it before it is registered (the pages listing
every refresh token's jti would come back); this app has no models, templates,
static files or admin, and changes nothing else of the order.
"""
