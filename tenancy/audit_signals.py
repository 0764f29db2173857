"""Every change of who may do what is audited, however it is made: the Django admin, a shell, a
script, a cascade. Model signals are the one hook all those paths share, so this is the exception to
"domain behaviour is called from services": it is a safety net that records, never decides.

What is watched:

* ``User``: ``is_superuser``, ``is_staff``, ``is_active`` (``user.access_changed`` with before and
  after), creation of a staff or superuser account (``user.created``), deletion (``user.deleted``),
  its groups and direct permissions (``user.groups_changed``, ``user.permissions_changed``);
* ``Group``: its permissions (``group.permissions_changed``) and its deletion with who was in it;
* ``Membership`` (the portal's roles): ``membership.created``/``updated``/``deleted``, the verbs the
  services use. A write made through ``core.writes`` (the API, the portal, ``AuditedAdmin``) is
  audited there, with its tenant, so ``core.writes.is_audited_write`` tells these receivers to stay
  silent: each change is recorded once. Other paths (a shell, ``seed_demo``, the memberships a
  tenant's or a user's deletion takes with it) are recorded here.

The actor is the request's signed-in user (``tenancy.middleware``), or nobody (the system). Writes that
send no model signals (``bulk_create``, ``QuerySet.update``, raw SQL) are not seen here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from audit import services as audit
from core.writes import is_audited_write
from tenancy.middleware import current_actor
from tenancy.models import Membership, Tenant

#: The fields of a user that say what they may do.
ACCESS_FIELDS = ("is_superuser", "is_staff", "is_active")
_MEMBERSHIP_FIELDS = ("user_id", "tenant_id", "role")


def _record(verb: str, *, object_type: str, object_id, text: str, tenant=None, before=None, after=None) -> None:
    # A signal may fire outside any transaction (autocommit in a shell): the event gets its own then.
    with transaction.atomic():
        audit.record(
            verb,
            actor=current_actor(),
            object_type=object_type,
            object_id=object_id,
            object_repr=text,
            tenant_id=tenant.pk if tenant is not None else None,
            tenant_name=str(tenant) if tenant is not None else "",
            before=before,
            after=after,
        )


def _changed(before: dict, after: dict) -> tuple[dict, dict]:
    keys = [k for k in after if before.get(k) != after[k]]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


# --- User fields ------------------------------------------------------------------------------------


def _user_pre_save(sender, instance, raw=False, update_fields=None, **kwargs):
    instance._access_before = None
    if raw or instance.pk is None or is_audited_write(sender):
        return  # a write through core.writes (allocations.services.people) records its own event
    if update_fields is not None and not set(update_fields) & set(ACCESS_FIELDS):
        return  # e.g. last_login at sign-in: nothing about access can change, and no query is spent
    instance._access_before = sender.objects.filter(pk=instance.pk).values(*ACCESS_FIELDS).first()


def _user_post_save(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    after = {f: getattr(instance, f) for f in ACCESS_FIELDS}
    before, instance._access_before = getattr(instance, "_access_before", None), None
    text = instance.get_username()
    if created:
        if instance.is_superuser or instance.is_staff:  # a plain account may do nothing until given a role
            _record("user.created", object_type="auth.user", object_id=instance.pk, text=text, after=after)
    elif before is not None and before != after:
        old, new = _changed(before, after)
        _record("user.access_changed", object_type="auth.user", object_id=instance.pk, text=text, before=old, after=new)


def _user_post_delete(sender, instance, **kwargs):
    before = {f: getattr(instance, f) for f in ACCESS_FIELDS}
    _record("user.deleted", object_type="auth.user", object_id=instance.pk, text=instance.get_username(), before=before)


# --- Many-to-many: a user's groups and permissions, a group's permissions -----------------------------


def _permission_label(permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


@dataclass(frozen=True)
class _Relation:
    """One many-to-many table that grants something: whose (``owner``) and what (``target``)."""

    through: type
    owner: str
    target: str
    verb: str
    object_type: str
    label: Callable

    def held(self, owner_id) -> list[str]:
        rows = self.through.objects.filter(**{f"{self.owner}_id": owner_id}).select_related(self.target)
        if self.target == "permission":
            rows = rows.select_related("permission__content_type")
        return sorted(self.label(getattr(row, self.target)) for row in rows)

    def owners(self, instance, reverse: bool, pk_set) -> list:
        if not reverse:
            return [instance.pk]
        if pk_set is not None:
            return sorted(pk_set)
        return list(
            self.through.objects.filter(**{f"{self.target}_id": instance.pk}).values_list(f"{self.owner}_id", flat=True)
        )


def _relations() -> dict:
    User = get_user_model()
    return {
        r.through: r
        for r in (
            _Relation(User.groups.through, "user", "group", "user.groups_changed", "auth.user", lambda g: g.name),
            _Relation(
                User.user_permissions.through,
                "user",
                "permission",
                "user.permissions_changed",
                "auth.user",
                _permission_label,
            ),
            _Relation(
                Group.permissions.through,
                "group",
                "permission",
                "group.permissions_changed",
                "auth.group",
                _permission_label,
            ),
        )
    }


def _m2m_changed(sender, instance, action, reverse, pk_set, **kwargs):
    relation = _RELATIONS.get(sender)
    if relation is None:
        return
    if action in ("pre_add", "pre_remove", "post_add", "post_remove") and not pk_set:
        return  # nothing added or removed
    stash = instance.__dict__.setdefault("_access_m2m_before", {})
    if action.startswith("pre_"):
        stash[sender] = {owner: relation.held(owner) for owner in relation.owners(instance, reverse, pk_set)}
        return
    before = stash.pop(sender, {})
    owner_model = relation.through._meta.get_field(relation.owner).related_model
    names = dict(owner_model.objects.filter(pk__in=list(before)).values_list("pk", _name_field(owner_model)))
    for owner, held_before in before.items():
        held_after = relation.held(owner)
        if held_after != held_before:
            _record(
                relation.verb,
                object_type=relation.object_type,
                object_id=owner,
                text=names.get(owner, ""),
                before={relation.target + "s": held_before},
                after={relation.target + "s": held_after},
            )


def _name_field(model) -> str:
    return model.USERNAME_FIELD if model is get_user_model() else "name"


def _group_pre_delete(sender, instance, **kwargs):
    User = get_user_model()
    instance._access_before = {
        "permissions": _RELATIONS[Group.permissions.through].held(instance.pk),
        "members": sorted(User.objects.filter(groups=instance).values_list(User.USERNAME_FIELD, flat=True)),
    }


def _group_post_delete(sender, instance, **kwargs):
    _record(
        "group.deleted",
        object_type="auth.group",
        object_id=instance.pk,
        text=instance.name,
        before={"name": instance.name, **(getattr(instance, "_access_before", None) or {})},
    )


# --- Memberships outside the audited services ------------------------------------------------------


def _membership_state(membership) -> dict:
    return {f: getattr(membership, f) for f in _MEMBERSHIP_FIELDS}


def _tenant_of(membership):
    # Read afresh: in a cascade the tenant may be on its way out (still there until the end of the delete).
    return Tenant.objects.filter(pk=membership.tenant_id).first() if membership.tenant_id else None


def _membership_pre_save(sender, instance, raw=False, **kwargs):
    instance._access_before = None
    if raw or instance.pk is None or is_audited_write(sender):
        return
    instance._access_before = sender.objects.filter(pk=instance.pk).values(*_MEMBERSHIP_FIELDS).first()


def _membership_post_save(sender, instance, created, raw=False, **kwargs):
    if raw or is_audited_write(sender):
        return
    after = _membership_state(instance)
    before, instance._access_before = getattr(instance, "_access_before", None), None
    common = {"object_type": audit.object_type_of(instance), "object_id": instance.pk, "tenant": _tenant_of(instance)}
    if created:
        _record("membership.created", text=str(instance), after=after, **common)
    elif before is not None and before != after:
        old, new = _changed(before, after)
        _record("membership.updated", text=str(instance), before=old, after=new, **common)


def _membership_post_delete(sender, instance, **kwargs):
    if is_audited_write(sender):
        return
    tenant = _tenant_of(instance)
    user = get_user_model().objects.filter(pk=instance.user_id).first()
    where = tenant.name if tenant is not None else "platform"
    text = f"{user if user is not None else instance.user_id} · {instance.get_role_display()} · {where}"
    _record(
        "membership.deleted",
        object_type=audit.object_type_of(instance),
        object_id=instance.pk,
        text=text,
        tenant=tenant,
        before=_membership_state(instance),
    )


_RELATIONS: dict = {}


def connect() -> None:
    """Connect the receivers (``TenancyConfig.ready``)."""
    User = get_user_model()
    _RELATIONS.update(_relations())
    uid = "tenancy.audit_signals"
    pre_save.connect(_user_pre_save, sender=User, dispatch_uid=f"{uid}.user_pre_save")
    post_save.connect(_user_post_save, sender=User, dispatch_uid=f"{uid}.user_post_save")
    post_delete.connect(_user_post_delete, sender=User, dispatch_uid=f"{uid}.user_post_delete")
    for through in _RELATIONS:
        m2m_changed.connect(_m2m_changed, sender=through, dispatch_uid=f"{uid}.m2m.{through._meta.label}")
    pre_delete.connect(_group_pre_delete, sender=Group, dispatch_uid=f"{uid}.group_pre_delete")
    post_delete.connect(_group_post_delete, sender=Group, dispatch_uid=f"{uid}.group_post_delete")
    pre_save.connect(_membership_pre_save, sender=Membership, dispatch_uid=f"{uid}.membership_pre_save")
    post_save.connect(_membership_post_save, sender=Membership, dispatch_uid=f"{uid}.membership_post_save")
    post_delete.connect(_membership_post_delete, sender=Membership, dispatch_uid=f"{uid}.membership_post_delete")
