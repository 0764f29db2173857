"""Who is who: tenants, their memberships and the roles, and the one module that says who may see
and do what (``tenancy.roles``, ``tenancy.permissions``). Every app above reads roles from here."""
