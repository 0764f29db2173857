"""People: finding (or making) a person's account, the roles they hold, and switching them off and on.

One transaction per change, audited. Memberships are written by ``tenants.create_membership`` /
``update_membership`` / ``delete_membership`` (``core.writes``); this module decides *whom* and *which*
(an account named by username or email, no duplicate role) and says so in words when it cannot.
"""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q

from allocations.services import tenants
from audit import services as audit
from core.errors import Conflict, Forbidden, PortalError
from core.writes import update_object
from tenancy.models import Membership, Tenant
from tenancy.roles import PLATFORM_ROLES, Role
from tenancy.sessions import end_sessions  # issue 17: the rule lives in tenancy, for sign out everywhere too

#: What a platform admin is told when an account is made for someone. Made from an address, it is mailed
#: an invitation with a link to set its password (issue 17: ``notifications`` acts on ``invited``).
NEW_ACCOUNT_NOTE = (
    "It has no password yet: an invitation to set one is mailed to its address (a platform admin can also "
    "set one with `manage.py changepassword {username}`)."
)


def _in_words(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
    return " ".join(exc.messages)


def find_person(identifier: str):
    """The account named by ``identifier``: a username, or an email address (case-insensitive). ``None``
    when there is none; Conflict when one address belongs to several accounts (name the username then)."""
    identifier = (identifier or "").strip()
    User = get_user_model()
    exact = User.objects.filter(**{User.USERNAME_FIELD: identifier}).first()
    if exact is not None or "@" not in identifier:
        return exact
    matches = list(User.objects.filter(email__iexact=identifier).order_by("pk")[:2])
    if len(matches) > 1:
        raise Conflict(
            f"More than one account has the address {identifier}; name the person by username instead.",
            details={"email": identifier},
        )
    return matches[0] if matches else None


def _free_username(email: str) -> str:
    """A username made from an address's local part (letters, digits and @.+-_ only), made unique."""
    User = get_user_model()
    base = re.sub(r"[^\w.@+-]", "", email.split("@", 1)[0])[:140] or "user"
    name, n = base, 1
    while User.objects.filter(**{User.USERNAME_FIELD: name}).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def create_person(identifier: str, *, actor):
    """A local account for ``identifier`` (a username, or an email address: the username is then made
    from it) without a usable password (``NEW_ACCOUNT_NOTE``); audited as ``user.created``."""
    identifier = (identifier or "").strip()
    if not identifier:
        raise PortalError("Give a username or an email address.", details={"field": "user"})
    User = get_user_model()
    if "@" in identifier:
        try:
            validate_email(identifier)
        except ValidationError:
            raise PortalError(f"{identifier} is not an email address.", details={"field": "user"}) from None
        user = User(**{User.USERNAME_FIELD: _free_username(identifier)}, email=identifier)
    else:
        user = User(**{User.USERNAME_FIELD: identifier})
    user.set_unusable_password()
    try:
        user.full_clean()
    except ValidationError as exc:
        raise PortalError(
            f"Cannot make an account for {identifier}: {_in_words(exc)}", details={"field": "user"}
        ) from None
    with transaction.atomic():
        user.save()
        audit.record_row(
            "user.created",
            user,
            actor=actor,
            text=user.get_username(),
            after={
                "username": user.get_username(),
                "email": user.email,
                "is_active": True,
                "usable_password": False,
                "invited": bool(user.email),  # issue 17: mailed a set-password link (notifications.events)
            },
        )
    return user


def _refuse_a_duplicate(user, role: str, tenant: Tenant | None, *, exclude: int | None = None) -> None:
    held = Membership.objects.filter(user=user, role=role, tenant=tenant if role == Role.TENANT_MEMBER else None)
    if exclude is not None:
        held = held.exclude(pk=exclude)
    if held.exists():
        where = f" of {tenant.name}" if role == Role.TENANT_MEMBER and tenant is not None else ""
        raise ValidationError(
            f"{user.get_username()} is already {Role(role).label.lower()}{where}: that membership already exists."
        )


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise ValidationError({"role": f"Choose a role: {', '.join(Role.values)}."})
    return role


MEMBER_NEEDS_TENANT = "A tenant member must belong to a tenant: choose one."


def grant_role(user, role: str, *, tenant: Tenant | None = None, actor) -> Membership:
    """Give ``user`` a role: tenant members belong to ``tenant``; platform admins and auditors to none."""
    role = _check_role(role)
    if role in PLATFORM_ROLES and tenant is not None:
        raise ValidationError({"tenant": f"The {Role(role).label} role is platform-wide; leave tenant empty."})
    if role == Role.TENANT_MEMBER and tenant is None:
        raise ValidationError({"tenant": MEMBER_NEEDS_TENANT})
    _refuse_a_duplicate(user, role, tenant)
    return tenants.create_membership({"user": user, "tenant": tenant, "role": role}, actor=actor)


def add_member(identifier: str, *, role: str = Role.TENANT_MEMBER, tenant: Tenant | None = None, actor):
    """Give the account named by ``identifier`` (username or email) ``role``. An email address nobody has
    gets a new account (``create_person``); an unknown username is refused (a typo must not make an
    account). Returns ``(membership, account_created)``; all or nothing."""
    _check_role(role)
    identifier = (identifier or "").strip()
    with transaction.atomic():
        person = find_person(identifier)
        created = person is None
        if created and "@" not in identifier:
            raise ValidationError(
                {"user": f"No account is called {identifier!r}; give the person's email address to make one."}
            )
        if created:
            person = create_person(identifier, actor=actor)
        return grant_role(person, role, tenant=tenant, actor=actor), created


def set_role(membership: Membership, role: str, *, tenant: Tenant | None = None, actor) -> Membership:
    """Change a membership's role (a tenant member keeps its tenant unless ``tenant`` names another;
    platform roles carry none)."""
    role = _check_role(role)
    tenant = None if role in PLATFORM_ROLES else (tenant or membership.tenant)
    if role == Role.TENANT_MEMBER and tenant is None:
        raise ValidationError({"tenant": MEMBER_NEEDS_TENANT})
    _refuse_a_duplicate(membership.user, role, tenant, exclude=membership.pk)
    return tenants.update_membership(membership, {"role": role, "tenant": tenant}, actor=actor)


def _active_admins_besides(user) -> bool:
    User = get_user_model()
    admins = User.objects.filter(is_active=True).filter(
        Q(is_superuser=True) | Q(memberships__role=Role.PLATFORM_ADMIN, memberships__tenant__isnull=True)
    )
    return admins.exclude(pk=user.pk).exists()


def set_user_active(user, active: bool, *, actor):
    """Switch a person's account off (``active=False``) or on again; audited (``user.updated``). Switching
    off ends their sign-in sessions in the same transaction; their open sockets and consoles are told
    after commit (``allocations.signals``) and API tokens stop authenticating them (``tenancy.tokens``).
    Nobody switches themselves off, nor the last active platform admin."""
    if not active and getattr(actor, "pk", None) == user.pk:
        raise Forbidden("You cannot deactivate your own account; ask another platform admin.")
    with transaction.atomic():
        if not active and user.is_active and _is_admin(user) and not _active_admins_besides(user):
            raise Conflict(f"{user.get_username()} is the last active platform admin; appoint another first.")
        user = update_object(user, {"is_active": bool(active)}, actor=actor)
        if not active:
            end_sessions(user)
    return user


def _is_admin(user) -> bool:
    return user.is_superuser or user.memberships.filter(role=Role.PLATFORM_ADMIN).exists()


def create_membership_for(data: dict, *, actor) -> Membership:
    """The API's membership create: ``user`` is a username or an email (``add_member``); the returned row
    says whether an account was made (``account_created``)."""
    membership, created = add_member(data["user"], role=data["role"], tenant=data.get("tenant"), actor=actor)
    membership.account_created = created
    return membership


def change_membership(membership: Membership, changes: dict, *, actor) -> Membership:
    """The API's membership update: its role and tenant change (``set_role``); its person does not."""
    wanted = changes.get("user")
    if wanted is not None and find_person(wanted) != membership.user:
        raise PortalError("A membership's person cannot change: remove it and add the other person.")
    role = changes.get("role", membership.role)
    return set_role(membership, role, tenant=changes.get("tenant", membership.tenant), actor=actor)
