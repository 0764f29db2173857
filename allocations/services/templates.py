"""Desktop templates: what end users may ask for, and which tenants may ask."""

from __future__ import annotations

from allocations.models import DesktopTemplate
from core.writes import create_object, delete_object, update_object


def create_template(data: dict, *, actor) -> DesktopTemplate:
    tenants = data.pop("allowed_tenants", [])
    return create_object(DesktopTemplate(**data), actor=actor, m2m={"allowed_tenants": tenants})


def update_template(template: DesktopTemplate, changes: dict, *, actor) -> DesktopTemplate:
    m2m = {"allowed_tenants": changes.pop("allowed_tenants")} if "allowed_tenants" in changes else None
    return update_object(template, changes, actor=actor, m2m=m2m)


def delete_template(template: DesktopTemplate, *, actor) -> None:
    delete_object(template, actor=actor)
