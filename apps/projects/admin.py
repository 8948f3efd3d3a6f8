from django.contrib import admin

from apps.projects.models import Channel, LogSource, Project

admin.site.register([Project, LogSource, Channel])
