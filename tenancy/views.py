"""The API tokens page (/account/tokens/): a person's own tokens, made, rotated and revoked through
``tenancy.tokens`` (audited). A new key is rendered in the response that made it, never stored."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.errors import PortalError
from tenancy import tokens
from tenancy.models import APIToken


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
