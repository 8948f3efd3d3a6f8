from django.contrib import admin

from apps.apikeys.models import ApiKey

admin.site.register([ApiKey])
