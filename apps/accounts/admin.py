from django.contrib import admin

from apps.accounts.models import User

admin.site.register(User)
