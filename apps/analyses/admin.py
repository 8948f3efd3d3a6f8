from django.contrib import admin

from apps.analyses.models import Analysis

admin.site.register([Analysis])
