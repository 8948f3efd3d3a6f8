"""Rows that name their creator as the organization knew them (`created_by_email`).

Keys and webhooks keep the address their creator had at creation, as audit events and
analyses keep theirs: an address given to the account later is not the one the
organization knew. When the account is deleted, `created_by` goes to NULL (SET_NULL) and
the address must not stay behind it.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import models
from django.db.models.signals import pre_delete


def forget_deleted_creators(
    model: type[models.Model], by: str = "created_by", address: str = "created_by_email"
) -> None:
    """Empty `model`'s `address` (`created_by_email`) on the rows whose `by` is an account
    being deleted.

    Call it from the app's `ready()`. One receiver per model, in the same transaction as
    the delete (pre_delete runs inside `Model.delete()`'s atomic block).
    """

    def forget(sender, instance, **kwargs) -> None:
        model.objects.filter(**{by: instance}).update(**{address: ""})

    pre_delete.connect(
        forget,
        sender=get_user_model(),
        weak=False,  # `forget` lives only in this registration
        dispatch_uid=f"{model._meta.label}.forget-creator",
    )
