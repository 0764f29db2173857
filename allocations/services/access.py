"""Reads of desktops across the tenant boundary: "not found" alike for missing rows and for rows
that are not the caller's. Who holds which role is ``tenancy.roles``."""

from __future__ import annotations

from allocations.models import Desktop
from core.errors import NotFound, PortalError
from core.limits import MAX_ID
from tenancy.roles import may_act_for, sees_everything

#: What only operators see of a desktop: where it runs (host, GPUs, libvirt domain), under the names
#: the API (``host_name``) and the allocation export (``host``) give it.
WHEREABOUTS = frozenset({"host", "host_name", "gpu_uuids", "domain_name"})


def may_act_on(user, desktop: Desktop) -> bool:
    """Release, extend, reboot: the desktop's owner, or a platform admin."""
    return may_act_for(user, desktop.owner_id)


def desktop_fields_hidden_from(user) -> frozenset[str]:
    """The desktop fields ``user`` may not see: none for operators, the whereabouts for everyone else."""
    return frozenset() if sees_everything(user) else WHEREABOUTS


def refuse_hidden_filters(user, filters) -> None:
    """A filter on a field ``user`` may not see would reveal it through what the list returns (which host
    holds a desktop): the desktops list and the allocation export refuse it, as PortalError (400)."""
    hidden = sorted(name for name in desktop_fields_hidden_from(user) if filters.get(name) not in (None, ""))
    if hidden:
        raise PortalError(f"Only operators filter desktops by where they run ({', '.join(hidden)}).")


def desktop_id(value) -> int | None:
    """A desktop's id as a URL or a form gives it: ASCII digits naming 1..MAX_ID, else None (``int()``
    alone also takes " 7", "1_0", "٧" and "true" fails it with ValueError; huge ids overflow the column)."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int):
        text = str(value)
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID))):
            return None
        value = int(text)
    return value if 1 <= value <= MAX_ID else None


def get_desktop_for(user, pk, *, acting: bool = False) -> Desktop:
    """The desktop ``pk`` as ``user`` may see it (operators: any; others: their own), or NotFound for
    missing rows and rows that are not theirs alike. ``acting=True`` (release, extend, reboot): only
    those who ``may_act_on`` it; an auditor who is also a tenant member acts on their own only."""
    pk = desktop_id(pk)
    if pk is None:
        raise NotFound("No such desktop (it does not exist or it is not yours).")
    desktop = (
        Desktop.objects.visible_to(user).select_related("profile", "template", "host", "tenant").filter(pk=pk).first()
    )
    if desktop is None or (acting and not may_act_on(user, desktop)):
        raise NotFound("No such desktop (it does not exist or it is not yours).")
    return desktop
