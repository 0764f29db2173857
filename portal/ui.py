"""Helpers for server-rendered pages: role checks that answer like the API does."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from allocations.services.access import roles_of


def role_required(*role_names: str):
    """Let the view run for users holding any of ``role_names``; send anonymous users to log in
    and answer 403 to the rest."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not set(roles_of(request.user).names) & set(role_names):
                raise PermissionDenied("Your role cannot open this page.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
