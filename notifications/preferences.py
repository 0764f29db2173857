"""Per-person choices: for each kind, whether it is shown in the portal and whether it is mailed.
Kinds a person never changed follow ``models.DEFAULTS``. Changed only here, audited."""

from __future__ import annotations

from django.db import transaction

from audit import services as audit
from notifications.models import ADMIN_KINDS, DEFAULTS, NotificationKind, NotificationPreference
from tenancy.roles import roles_of


def preferences_of(user) -> dict[str, tuple[bool, bool]]:
    """Every kind's (in the portal, by mail) for ``user``."""
    chosen = {
        kind: (in_portal, by_email)
        for kind, in_portal, by_email in NotificationPreference.objects.filter(user_id=user.pk).values_list(
            "kind", "in_portal", "by_email"
        )
    }
    return {kind: chosen.get(kind, DEFAULTS[kind]) for kind in NotificationKind.values}


def channels_for(user, kind: str) -> tuple[bool, bool]:
    """(in the portal, by mail) for one kind."""
    row = NotificationPreference.objects.filter(user_id=user.pk, kind=kind).values_list("in_portal", "by_email")
    return row.first() or DEFAULTS[kind]


def kinds_for(user) -> list[str]:
    """The kinds ``user`` may be sent: the admins' kinds only to platform admins."""
    admin = roles_of(user).platform_admin
    return [kind for kind in NotificationKind.values if admin or kind not in ADMIN_KINDS]


def set_preferences(user, choices: dict[str, tuple[bool, bool]], *, actor) -> dict[str, tuple[bool, bool]]:
    """Keep ``choices`` (kind → (in the portal, by mail)) for ``user``; unknown kinds are ignored. One
    audit event (``notification_preferences.updated``) with what changed; nothing when nothing did."""
    with transaction.atomic():
        before = preferences_of(user)
        changed = {k: v for k, v in choices.items() if k in before and tuple(v) != before[k]}
        for kind, (in_portal, by_email) in changed.items():
            NotificationPreference.objects.update_or_create(
                user=user, kind=kind, defaults={"in_portal": bool(in_portal), "by_email": bool(by_email)}
            )
        if changed:
            audit.record(
                "notification_preferences.updated",
                actor=actor,
                object_type="auth.user",
                object_id=user.pk,
                object_repr=user.get_username(),
                before={k: _words(before[k]) for k in changed},
                after={k: _words(v) for k, v in changed.items()},
            )
    return preferences_of(user)


def _words(choice) -> dict:
    return {"in_portal": bool(choice[0]), "by_email": bool(choice[1])}
