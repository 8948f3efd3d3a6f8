"""Gunicorn settings read from the project directory (gunicorn loads ./gunicorn.conf.py).

Header lines up to 16 KiB reach the application, so an oversized credential
(say a 10 KB `Authorization`) gets the API's own JSON answer
(401 AUTHORIZATION_MALFORMED) instead of gunicorn's HTML 431; anything larger
is still refused by gunicorn before the application runs.
"""

limit_request_field_size = 16 * 1024
