import os

from django.core.wsgi import get_wsgi_application

from core.wsgi import reading_chunked_bodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sigsentry.settings")

application = reading_chunked_bodies(get_wsgi_application())
