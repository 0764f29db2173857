from tenancy.roles import roles_of


def roles(request):
    """Expose the caller's portal roles to templates (navigation shows what the role can use)."""
    return {"portal_roles": roles_of(getattr(request, "user", None))}
