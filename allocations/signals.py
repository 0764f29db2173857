"""A change of who may do what reaches open sockets at once, however it is made (portal services, the
Django admin, a shell): memberships saved or deleted, and users whose active or superuser flag
changes. After commit, the people concerned get ``access.changed`` on their live socket (it re-reads
its subscriptions: ``consumers.LiveConsumer``) and ``console.recheck`` on their consoles."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save, pre_save

from core import live
from tenancy.models import Membership

#: A save of only these fields (a sign-in) changes nobody's access.
QUIET_USER_FIELDS = frozenset({"last_login", "password"})


def access_changed(*user_ids: int) -> None:
    people = sorted({pk for pk in user_ids if pk})
    if not people:
        return
    live.publish_on_commit([live.console_user_group(pk) for pk in people], "console.recheck", {})
    live.publish_on_commit([live.user_group(pk) for pk in people], "access.changed", {})


def _remember_holder(sender, instance, **kwargs):
    rows = Membership.objects.filter(pk=instance.pk) if instance.pk else Membership.objects.none()
    instance._holder_before = rows.values_list("user_id", flat=True).first()


def _membership_saved(sender, instance, **kwargs):
    access_changed(getattr(instance, "_holder_before", None), instance.user_id)


def _membership_deleted(sender, instance, **kwargs):
    access_changed(instance.user_id)


def _user_saved(sender, instance, created, update_fields=None, **kwargs):
    if created or (update_fields is not None and set(update_fields) <= QUIET_USER_FIELDS):
        return
    access_changed(instance.pk)


def connect() -> None:
    pre_save.connect(_remember_holder, sender=Membership, dispatch_uid="access-membership-before")
    post_save.connect(_membership_saved, sender=Membership, dispatch_uid="access-membership-saved")
    post_delete.connect(_membership_deleted, sender=Membership, dispatch_uid="access-membership-deleted")
    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid="access-user-saved")
