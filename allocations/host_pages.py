"""The force-drain page of a host (``services.drain``). Served from allocations, as draining tells and
stops desktops and inventory sits below allocations; the other host pages are inventory's."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone

from allocations.models import Desktop
from allocations.services.drain import drain_host
from core.errors import PortalError
from inventory.forms import DrainForm
from inventory.models import Host
from tenancy.permissions import role_required
from tenancy.roles import ADMINS


@role_required(ADMINS)
def host_drain(request, name):
    """GET: the form and the desktops it would stop; POST: drain (a reason, and in how many minutes,
    or "End now")."""
    host = get_object_or_404(Host.objects.active(), name=name)
    form = DrainForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        stop_at = timezone.now() + timedelta(minutes=form.cleaned_data["minutes"])
        try:
            result = drain_host(host, reason=form.cleaned_data["reason"], stop_at=stop_at, actor=request.user)
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            told = len(result.notified)
            done = f"; {len(result.stopped)} stopped now" if result.stopped else ""
            messages.success(
                request, f"{host.name} is draining: {told} desktop owner{'s' if told != 1 else ''} told{done}."
            )
            return redirect("inventory:host-detail", name=host.name)
    desktops = (
        Desktop.objects.filter(host=host)
        .holding_capacity()
        .select_related("owner", "tenant")
        .order_by("expires_at", "pk")
    )
    status = 400 if request.method == "POST" and form.errors else 200
    return render(
        request, "inventory/host_drain.html", {"host": host, "form": form, "desktops": desktops}, status=status
    )


urlpatterns = [
    path("hosts/<str:name>/drain/", host_drain, name="host-drain"),
]
