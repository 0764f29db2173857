"""/notifications/: a person's own notifications (open, mark read, mark all read) and their preferences;
/notifications/deliveries/: the mail queue for the platform admins (late and failed mail, send again);
/notifications/invitation/…: setting a first password from an invitation mail (``invitations``)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from allocations.choices import DesktopStatus
from core.queue import enqueue_on_commit
from notifications import mail, services
from notifications.forms import PreferencesForm
from notifications.invitations import invitation_tokens
from notifications.models import Delivery, DeliveryStatus, Notification, NotificationKind
from notifications.preferences import kinds_for, preferences_of, set_preferences
from tenancy.permissions import role_required
from tenancy.roles import ADMINS, OPERATORS

PAGE_SIZE = 50


@login_required
def notification_list(request):
    """The person's own notifications, newest first, and the form of their preferences."""
    form = PreferencesForm(kinds=kinds_for(request.user), current=preferences_of(request.user))
    return _list_page(request, form)


def _list_page(request, form, status: int = 200):
    shown = Notification.objects.shown_to(request.user).select_related("desktop")
    page = Paginator(shown, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "unread": services.unread_count(request.user),
        "form": form,
        "running": DesktopStatus.RUNNING,
        "expiring": NotificationKind.DESKTOP_EXPIRING,
    }
    return render(request, "notifications/list.html", context, status=status)


@login_required
def unread(request):
    """The bell's count, for a page whose live socket reconnected (it missed what came meanwhile)."""
    return JsonResponse({"unread": services.unread_count(request.user)})


@login_required
def notification_open(request, pk):
    """Open one of one's own notifications: marked read, then its link (another person's: 404)."""
    notification = get_object_or_404(Notification.objects.shown_to(request.user), pk=pk)
    services.mark_read(request.user, notification.pk)
    if notification.kind == NotificationKind.DESKTOP_EXPIRING:
        return redirect(f"{reverse_lazy('notifications:list')}#notification-{notification.pk}")
    safe = url_has_allowed_host_and_scheme(notification.link, allowed_hosts={request.get_host()})
    return redirect(notification.link if notification.link and safe else "notifications:list")


@require_POST
@login_required
def notification_read(request, pk):
    get_object_or_404(Notification.objects.shown_to(request.user), pk=pk)
    services.mark_read(request.user, pk)
    return redirect("notifications:list")


@require_POST
@login_required
def notification_read_all(request):
    count = services.mark_all_read(request.user)
    messages.success(request, f"Marked {count} notification{'s' if count != 1 else ''} read.")
    return redirect("notifications:list")


@require_POST
@login_required
def preferences(request):
    kinds = kinds_for(request.user)
    form = PreferencesForm(request.POST, kinds=kinds, current=preferences_of(request.user))
    if not form.is_valid():  # checkboxes cannot be invalid; kept for a hand-made request
        return _list_page(request, form, status=400)
    set_preferences(request.user, form.choices(), actor=request.user)
    messages.success(request, "Saved: you are told of each kind as you chose.")
    return redirect(f"{reverse_lazy('notifications:list')}#preferences")


@role_required(OPERATORS)
def deliveries(request):
    """The mail queue: what is late (retrying) or given up, with the last error; counts by status."""
    counts = dict(Delivery.objects.values_list("status").annotate(n=Count("id")).order_by())
    show = request.GET.get("status") or "problems"
    rows = Delivery.objects.select_related("recipient").order_by("-created_at")
    if show == "problems":
        rows = rows.exclude(status=DeliveryStatus.SENT).exclude(attempts=0)
    elif show in DeliveryStatus.values:
        rows = rows.filter(status=show)
    labels = dict(DeliveryStatus.choices)
    context = {
        "counts": [(status, label, counts.get(status, 0)) for status, label in labels.items()],
        "title": "Late or failed" if show == "problems" else labels.get(show, "All"),
        "rows": rows[:200],
        "show": show,
        "max_attempts": mail.MAX_ATTEMPTS,
    }
    return render(request, "notifications/deliveries.html", context)


@require_POST
@role_required(ADMINS)
def delivery_retry(request, pk):
    delivery = get_object_or_404(Delivery, pk=pk)
    with transaction.atomic():
        again = mail.retry(delivery)
        if again:
            enqueue_on_commit(services.SEND_TASK, delivery.pk)
    if again:
        messages.success(request, f"The mail to {delivery.to_address} is being sent again.")
    else:
        messages.info(request, "That mail was sent already.")
    return redirect("notifications:deliveries")


class InvitationView(auth_views.PasswordResetConfirmView):
    """Django's set-password-from-a-token page, in the portal's look, for invitations."""

    template_name = "notifications/invitation.html"
    token_generator = invitation_tokens
    success_url = reverse_lazy("notifications:invitation-done")
    post_reset_login = False


class InvitationDoneView(auth_views.PasswordResetCompleteView):
    template_name = "notifications/invitation_done.html"
