"""Role checks for the API (``RolePermission``) and the pages (``role_required``): they answer alike.

Which rows a caller sees is decided by each view's queryset (``visible_to(user)``), so a tenant
member asking for another tenant's row gets 404, not 403; these only say which roles may use a view.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from rest_framework import permissions

from tenancy.roles import Role, roles_of


class RolePermission(permissions.BasePermission):
    """Allow reads to ``view.read_roles`` and writes to ``view.write_roles`` (groups of ``tenancy.roles``)."""

    message = "You do not have permission to do this."

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False
        if request.method.upper() not in view.allowed_methods:
            return True  # let the view answer 405 Method Not Allowed, which says more than 403
        roles = roles_of(request.user)
        if request.method in permissions.SAFE_METHODS:
            if roles.any_of(getattr(view, "read_roles", ())):
                return True
            self.message = "Your role may not read this resource."
            return False
        allowed = getattr(view, "write_roles", ())
        if roles.any_of(allowed):
            return True
        if roles.names == [Role.AUDITOR.value]:
            self.message = "Auditors have read-only access."
        elif not allowed:
            self.message = "This resource is read-only."
        else:
            self.message = "Only a platform admin may change this."
        return False


def role_required(allowed):
    """Let a page's view run for users holding any role of ``allowed`` (a group of ``tenancy.roles``);
    send anonymous users to log in and answer 403 to the rest."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not roles_of(request.user).any_of(allowed):
                raise PermissionDenied("Your role cannot open this page.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
