"""Django admin that writes through the same services as the API and pages (validated, locked, audited)."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models

from core.errors import PortalError
from core.writes import create_object, delete_object, update_object


class AuditedAdmin(admin.ModelAdmin):
    """Every add, change and delete goes through a service and leaves an audit event.

    ``update_service(instance, changes, *, actor)`` and ``delete_service(instance, *, actor)`` may be
    set to the domain's own service where it has rules of its own (a GPU's mode under running desktops).
    Inlines of such admins are read-only: their rows are edited on their own admin pages."""

    update_service = None
    delete_service = None

    def _changes(self, obj, form) -> tuple[dict, dict]:
        fields, m2m = {}, {}
        for name in form.changed_data:
            field = obj._meta.get_field(name)
            if isinstance(field, models.ManyToManyField):
                m2m[name] = form.cleaned_data[name]
            else:
                fields[name] = getattr(obj, field.attname if field.is_relation else name)
        return fields, m2m

    def save_model(self, request, obj, form, change):
        try:
            if not change:
                create_object(obj, actor=request.user)
                return
            fields, m2m = self._changes(obj, form)
            if self.update_service is not None and not m2m:
                type(self).update_service(obj, fields, actor=request.user)
            else:
                update_object(obj, fields, actor=request.user, m2m=m2m or None)
        except PortalError as exc:
            raise ValidationError(exc.message) from exc

    def save_related(self, request, form, formsets, change):
        if not change:  # a new row's many-to-many values, audited as a change right after its creation
            obj = form.instance
            m2m = {
                f.name: form.cleaned_data[f.name]
                for f in obj._meta.many_to_many
                if f.name in form.cleaned_data and form.cleaned_data[f.name]
            }
            if m2m:
                update_object(obj, {}, actor=request.user, m2m=m2m)
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request, obj):
        if self.delete_service is not None:
            type(self).delete_service(obj, actor=request.user)
        else:
            delete_object(obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnly:
    """Shown in the admin, never added, changed or deleted there (for admins and inlines)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(ReadOnly):
    """For inlines of audited admins: shown, not edited here."""

    extra = 0
    can_delete = False
