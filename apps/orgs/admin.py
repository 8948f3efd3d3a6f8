from django.contrib import admin

from apps.orgs.models import Membership, Organization

admin.site.register([Organization, Membership])
