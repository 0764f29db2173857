"""Which recorded changes tell whom. Every desktop, quota and host change is an audit event written in
the one audited write path (``audit.services.record``), inside the change's transaction, and the layers
below cannot call upward: so this module listens to audit events being saved (``connect``) and, for the
verbs below, writes the notifications in that same transaction. A change that rolls back tells nobody.

A handler runs in a savepoint and its errors are logged, never raised: telling people must not be able
to fail the change it tells of. Mail is only queued here (``services.notify``)."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_save
from django.urls import reverse

from allocations.choices import DesktopStatus
from allocations.models import Desktop, QuotaRequest
from audit.models import AuditEvent
from notifications.models import INVITATION, NotificationKind
from notifications.services import notify, platform_admins, queue_mail

log = logging.getLogger(__name__)

DESKTOP = "allocations.desktop"
QUOTA_REQUEST = "allocations.quotarequest"
HOST = "inventory.host"


def _desktop(event: AuditEvent) -> Desktop | None:
    if event.object_type != DESKTOP:
        return None
    return Desktop.objects.select_related("owner", "host").filter(pk=event.object_id).first()


def _about_desktop(desktop: Desktop, kind: str, title: str, body: str, **data) -> None:
    notify(
        desktop.owner,
        kind,
        title=title,
        body=body,
        link=reverse("desktop-page", args=[desktop.pk]),
        desktop=desktop,
        object_type=DESKTOP,
        object_id=desktop.pk,
        data={key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in data.items()},
    )


def desktop_ready(event: AuditEvent) -> None:
    """``desktop.running``: set only once its guest is up (``allocations.tasks``), so it is ready."""
    desktop = _desktop(event)
    if desktop is not None:
        _about_desktop(
            desktop,
            NotificationKind.DESKTOP_READY,
            f"{desktop.name} is ready",
            f"Your desktop {desktop.name} is running and its guest is up: open its console from its page.",
            expires_at=desktop.expires_at,
        )


def desktop_failed(event: AuditEvent) -> None:
    """The reason in words (the owner's: the driver's own text stays in the audit event, for admins)."""
    desktop = _desktop(event)
    if desktop is not None:
        reason = (desktop.status_reason or (event.after or {}).get("reason") or "no reason was given").rstrip(".")
        _about_desktop(
            desktop,
            NotificationKind.DESKTOP_FAILED,
            f"{desktop.name} failed",
            f"Your desktop {desktop.name} failed: {reason}.",
            reason=reason,
        )


def desktop_expiring(event: AuditEvent) -> None:
    """``desktop.expiry_warning``, written by the expiry sweep at PORTAL_EXPIRY_WARNING_S before the end."""
    desktop = _desktop(event)
    if desktop is not None and desktop.status == DesktopStatus.RUNNING:
        _about_desktop(
            desktop,
            NotificationKind.DESKTOP_EXPIRING,
            f"{desktop.name} expires soon",
            f"Your desktop {desktop.name} will be stopped when its time runs out: save your work, or extend it.",
            expires_at=desktop.expires_at,
            extendable=not desktop.drain_reason,
        )


def desktop_expired(event: AuditEvent) -> None:
    desktop = _desktop(event)
    if desktop is not None:
        _about_desktop(
            desktop,
            NotificationKind.DESKTOP_EXPIRED,
            f"{desktop.name} expired",
            f"Your desktop {desktop.name} reached the end of its time and was stopped.",
            ended_at=desktop.ended_at,
        )


def desktop_drained(event: AuditEvent) -> None:
    """``desktop.drain_notice`` (``allocations.services.drain``): the host's reason and the stop time."""
    desktop = _desktop(event)
    if desktop is not None:
        host = desktop.host.name if desktop.host_id else "its host"
        _about_desktop(
            desktop,
            NotificationKind.HOST_MAINTENANCE,
            f"{desktop.name}: its host is being drained",
            f"The host {host} of your desktop {desktop.name} is being drained: {desktop.drain_reason}. "
            "The desktop will be stopped at the time shown: save your work before then.",
            stop_at=desktop.expires_at,
        )


def host_maintenance(event: AuditEvent) -> None:
    """``host.maintenance`` (an admin's, not a drain's: drained desktops are told one by one): each
    desktop on the host keeps running, and its owner is told why nothing new goes there."""
    if event.object_type != HOST:
        return
    reason = (event.after or {}).get("reason") or ""
    on_host = Desktop.objects.filter(host_id=event.object_id).holding_capacity().exclude(status=DesktopStatus.STOPPING)
    for desktop in on_host.select_related("owner", "host").order_by("pk"):
        why = f": {reason.rstrip('.')}" if reason else ""
        _about_desktop(
            desktop,
            NotificationKind.HOST_MAINTENANCE,
            f"{desktop.name}: its host is in maintenance",
            f"The host {desktop.host.name} of your desktop {desktop.name} was put in maintenance{why}. "
            "Your desktop keeps running until its own end; new desktops go to other hosts.",
        )


def _asked(request: QuotaRequest) -> str:
    labels = {
        "max_desktops": "{} concurrent desktops",
        "max_framebuffer_mib": "{} MiB of framebuffer",
        "max_desktop_hours": "{} hours per desktop",
        "max_desktop_hours_per_month": "{} desktop-hours a month",
    }
    return ", ".join(text.format(getattr(request, key)) for key, text in labels.items() if getattr(request, key))


def quota_requested(event: AuditEvent) -> None:
    """A new quota request: each platform admin is told (they decide it)."""
    if event.object_type != QUOTA_REQUEST:
        return
    request = QuotaRequest.objects.select_related("tenant", "requested_by").filter(pk=event.object_id).first()
    if request is None:
        return
    for admin in platform_admins():
        notify(
            admin,
            NotificationKind.QUOTA_REQUESTED,
            title=f"New quota request from {request.tenant.name}",
            body=f"{request.requested_by.get_username()} asks for {_asked(request)}: {request.reason}",
            link=reverse("quota-requests"),
            object_type=QUOTA_REQUEST,
            object_id=request.pk,
        )


def quota_decided(event: AuditEvent) -> None:
    """``quota_request.approved`` / ``.rejected``: the member who asked is told, with the admin's note."""
    if event.object_type != QUOTA_REQUEST:
        return
    request = QuotaRequest.objects.select_related("tenant", "requested_by").filter(pk=event.object_id).first()
    if request is None:
        return
    decision = request.get_status_display().lower()
    note = f" The platform admin's note: {request.decision_reason}" if request.decision_reason else ""
    notify(
        request.requested_by,
        NotificationKind.QUOTA_DECIDED,
        title=f"Your quota request for {request.tenant.name} was {decision}",
        body=f"Your request for {_asked(request)} was {decision}.{note}",
        link=reverse("home"),
        object_type=QUOTA_REQUEST,
        object_id=request.pk,
    )


def person_invited(event: AuditEvent) -> None:
    """``user.created`` by an admin adding someone new by address (``allocations.services.people``, which
    says ``invited``): a mail with a link to set their password."""
    if not (event.after or {}).get("invited"):
        return
    user = get_user_model().objects.filter(pk=event.object_id, is_active=True).first()
    if user is not None and user.email:
        queue_mail(user, INVITATION, data={"invited_by": event.actor_username})


HANDLERS = {
    "desktop.running": desktop_ready,
    "desktop.failed": desktop_failed,
    "desktop.expiry_warning": desktop_expiring,
    "desktop.expired": desktop_expired,
    "desktop.drain_notice": desktop_drained,
    "host.maintenance": host_maintenance,
    "quotarequest.created": quota_requested,
    "quota_request.approved": quota_decided,
    "quota_request.rejected": quota_decided,
    "user.created": person_invited,
}


def on_audit_event(sender, instance: AuditEvent, created: bool, raw: bool = False, **kwargs) -> None:
    handler = HANDLERS.get(instance.verb)
    if handler is None or not created or raw:
        return
    try:
        with transaction.atomic():  # a savepoint: a failing handler leaves the change itself intact
            handler(instance)
    except Exception:  # noqa: BLE001 - telling people must never fail the change it tells of
        log.exception("notifications for %s %s#%s failed", instance.verb, instance.object_type, instance.object_id)


def connect() -> None:
    post_save.connect(on_audit_event, sender=AuditEvent, dispatch_uid="notifications.events")
