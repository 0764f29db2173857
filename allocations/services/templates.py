"""Desktop templates: what end users may ask for, and which tenants may ask.

A template is retired, never deleted while desktops name it: a retired template is offered for no new
desktop (``request_desktop`` refuses it in words), and stays, with its desktops running or past, for
history. Retiring is for good; to offer it again, make a new template."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from allocations.models import DesktopTemplate
from audit import services as audit
from core.errors import Conflict
from core.writes import create_object, delete_object, update_object


def retired_refusal(template: DesktopTemplate) -> str:
    return f"{template.name} is retired: it is kept as it was, for history. Make a new template instead."


def create_template(data: dict, *, actor) -> DesktopTemplate:
    tenants = data.pop("allowed_tenants", [])
    return create_object(DesktopTemplate(**data), actor=actor, m2m={"allowed_tenants": tenants})


def update_template(template: DesktopTemplate, changes: dict, *, actor) -> DesktopTemplate:
    """Edit a template (audited); a retired one is refused (409), as it stays what its desktops had."""
    if DesktopTemplate.objects.filter(pk=template.pk, retired_at__isnull=False).exists():
        raise Conflict(retired_refusal(template))
    m2m = {"allowed_tenants": changes.pop("allowed_tenants")} if "allowed_tenants" in changes else None
    return update_object(template, changes, actor=actor, m2m=m2m)


def delete_template(template: DesktopTemplate, *, actor) -> None:
    delete_object(template, actor=actor)


def retire_template(template: DesktopTemplate, *, actor) -> DesktopTemplate:
    """Offer ``template`` for no new desktop from now on; its desktops keep running. Audited
    ``desktoptemplate.retired``; retiring one already retired is refused (409), recording nothing."""
    with transaction.atomic():
        locked = DesktopTemplate.objects.select_for_update().get(pk=template.pk)
        if locked.retired_at is not None:
            raise Conflict(f"{locked.name} was already retired on {locked.retired_at:%Y-%m-%d %H:%M} UTC.")
        before = {"is_active": locked.is_active, "retired_at": None}
        locked.retired_at = timezone.now()
        locked.is_active = False
        locked.save(update_fields=["retired_at", "is_active"])
        audit.record_row(
            "desktoptemplate.retired",
            locked,
            actor=actor,
            before=before,
            after={"is_active": False, "retired_at": locked.retired_at.isoformat()},
        )
    return locked
