"""The console page: the guest's screen in the portal's own page (noVNC, static/js/console.js).

The page only authorizes and renders; the browser asks ``POST /api/desktops/<id>/console/`` for a
ticket (consoles/api.py) and opens the WebSocket it names. Who may open a console is who may act on
the desktop (its owner, or a platform admin): others get 404, as for a desktop that does not exist.
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from allocations.choices import DesktopStatus
from allocations.services.access import get_desktop_for
from core.errors import PortalError
from tenancy.permissions import role_required
from tenancy.roles import EVERYONE


@role_required(EVERYONE)
def console_page(request, pk):
    """The console of a desktop the user may act on; auditors and everyone else get 404 (not 403), so
    the page does not tell them the desktop exists."""
    try:
        desktop = get_desktop_for(request.user, pk, acting=True)
    except PortalError as exc:
        raise Http404(exc.message) from None
    return render(
        request,
        "consoles/console.html",
        {
            "desktop": desktop,
            "running": desktop.status == DesktopStatus.RUNNING,
            "ticket_url": reverse("api-desktop-console", args=[desktop.pk]),
            "desktop_url": reverse("desktop-page", args=[desktop.pk]),
        },
    )
