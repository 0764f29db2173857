"""A person's own account pages. /account/: the time zone every page shows them times in
(``tenancy.preferences``, audited). /account/tokens/: their API tokens, made, rotated and revoked
through ``tenancy.tokens`` (audited); a new key is rendered in the response that made it, never stored."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core import timezones
from core.errors import PortalError
from tenancy import preferences, tokens
from tenancy.models import APIToken


@login_required
def account(request):
    """Choose a time zone (or the browser's). A name outside the tz database is refused, 400."""
    chosen = preferences.time_zone_of(request.user)
    error, status = "", 200
    if request.method == "POST":
        zone = request.POST.get("time_zone", "")
        try:
            preferences.set_time_zone(request.user, zone, actor=request.user)
        except PortalError as exc:
            error, status, chosen = exc.message, exc.status_code, zone[:64]
        else:
            shown = zone or "your browser's zone"
            messages.success(request, f"Saved: times are shown in {shown} from now on.")
            return redirect("account")
    context = {
        "chosen": chosen,
        "browser_zone": str(timezones.zone_named(request.COOKIES.get(timezones.COOKIE))),
        "zones": timezones.names(),
        "error": error,
        "now": timezone.now(),
    }
    return render(request, "tenancy/account.html", context, status=status)


def _page(request, *, new_key: str = "", new_token: APIToken | None = None):
    context = {"tokens": tokens.tokens_of(request.user), "new_key": new_key, "new_token": new_token}
    response = render(request, "tenancy/tokens.html", context)
    if new_key:
        response["Cache-Control"] = "no-store"  # the key must not sit in a cache or the back button's page
    return response


@login_required
def token_list(request):
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:100]
        token, key = tokens.issue_token(request.user, actor=request.user, name=name)
        return _page(request, new_key=key, new_token=token)
    return _page(request)


def _own_token(request, pk):
    try:
        return tokens.get_token_for(request.user, pk)
    except APIToken.DoesNotExist:
        messages.error(request, "There is no such token among yours.")
        return None


@login_required
@require_POST
def token_revoke(request, pk):
    token = _own_token(request, pk)
    if token is not None:
        try:
            tokens.revoke_token(token, actor=request.user)
            messages.success(request, f"Token {token.prefix}… is revoked: it no longer works.")
        except PortalError as exc:
            messages.error(request, exc.message)
    return redirect("api-tokens")


@login_required
@require_POST
def token_rotate(request, pk):
    token = _own_token(request, pk)
    if token is None:
        return redirect("api-tokens")
    try:
        new_token, key = tokens.rotate_token(token, actor=request.user)
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("api-tokens")
    return _page(request, new_key=key, new_token=new_token)
