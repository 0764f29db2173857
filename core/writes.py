"""Audited create/update/delete for rows whose change is a plain field edit.

Domain services (``inventory.services``, ``allocations.services``) call these so
that every write validates the row, takes the audit record in the same
transaction, and reports clashes as a readable ``Conflict`` instead of a 500.
Business actions with rules of their own get dedicated service functions.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from contextlib import contextmanager

from django.db import IntegrityError, models, transaction
from django.db.models.deletion import ProtectedError, RestrictedError

from audit import services as audit
from core.errors import Conflict

# The models whose rows create_object/update_object/delete_object are writing (and auditing) right now.
_writing: contextvars.ContextVar[tuple[type, ...]] = contextvars.ContextVar("core_audited_writes", default=())


@contextmanager
def _auditing(instance: models.Model):
    token = _writing.set((*_writing.get(), type(instance)))
    try:
        yield
    finally:
        _writing.reset(token)


def is_audited_write(model: type[models.Model]) -> bool:
    """True while one of these helpers writes a row of ``model`` and records its event. Model signals
    that audit other paths as a safety net (``tenancy.audit_signals``) skip those rows, so that each
    change is recorded once."""
    return model in _writing.get()


def _verb(instance: models.Model, action: str) -> str:
    return f"{instance._meta.model_name}.{action}"


def _tenant_of(instance: models.Model, tenant) -> tuple[int | None, str]:
    if tenant is None:
        return None, ""
    return tenant.pk, str(tenant)


def _save(instance: models.Model, m2m: dict[str, Iterable] | None) -> None:
    instance.full_clean()
    try:
        with transaction.atomic():
            instance.save()
            for name, values in (m2m or {}).items():
                getattr(instance, name).set(values)
    except IntegrityError as exc:
        # full_clean caught what it could; a concurrent writer can still win the race.
        raise Conflict(f"{instance._meta.verbose_name.capitalize()} conflicts with an existing one: {exc}") from exc


def create_object(
    instance: models.Model,
    *,
    actor,
    tenant=None,
    m2m: dict[str, Iterable] | None = None,
    after_save: Callable[[models.Model], None] | None = None,
) -> models.Model:
    """Validate and insert ``instance``; audit ``<model>.created``."""
    with transaction.atomic(), _auditing(instance):
        _save(instance, m2m)
        if after_save:
            after_save(instance)
        audit.record_row(
            _verb(instance, "created"), instance, actor=actor, tenant=tenant, after=audit.snapshot(instance)
        )
    return instance


def update_object(
    instance: models.Model,
    changes: dict,
    *,
    actor,
    tenant=None,
    m2m: dict[str, Iterable] | None = None,
) -> models.Model:
    """Apply ``changes`` to a locked copy of the row; audit ``<model>.updated`` with before/after.
    Nothing is recorded when nothing changed."""
    model = type(instance)
    with transaction.atomic(), _auditing(instance):
        # Lock the row so two admins editing at once serialise and each audit "before" is true.
        locked = model.objects.select_for_update().get(pk=instance.pk)
        before = audit.snapshot(locked)
        for field, value in changes.items():
            setattr(locked, field, value)
        _save(locked, m2m)
        after = audit.snapshot(locked)
        if after != before:
            audit.record_row(
                _verb(locked, "updated"),
                locked,
                actor=actor,
                tenant=tenant,
                before={k: v for k, v in before.items() if after.get(k) != v},
                after={k: v for k, v in after.items() if before.get(k) != v},
            )
    return locked


def delete_object(instance: models.Model, *, actor, tenant=None) -> None:
    """Delete the row; audit ``<model>.deleted`` with its last state.
    Rows still referenced elsewhere raise ``Conflict`` naming what holds them."""
    with transaction.atomic(), _auditing(instance):
        before = audit.snapshot(instance)
        pk, text = instance.pk, str(instance)
        try:
            with transaction.atomic():
                instance.delete()
        except (ProtectedError, RestrictedError) as exc:
            holders = sorted(
                {
                    str(obj)
                    for obj in list(
                        exc.protected_objects if hasattr(exc, "protected_objects") else exc.restricted_objects
                    )[:5]
                }
            )
            raise Conflict(
                f"{text} is still in use and cannot be deleted (used by: {', '.join(holders)}).",
                details={"used_by": holders},
            ) from exc
        tenant_id, tenant_name = _tenant_of(instance, tenant)
        audit.record(
            _verb(instance, "deleted"),
            actor=actor,
            object_type=audit.object_type_of(instance),
            object_id=pk,
            object_repr=text,
            tenant_id=tenant_id,
            tenant_name=tenant_name,
            before=before,
        )
