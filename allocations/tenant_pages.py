"""The platform admins' tenant, people and quota pages. Operators (admins and auditors) read them; only
platform admins change anything, and every change goes through ``services.tenants`` / ``services.people``
(validated, audited); refusals become messages on the page, with the input kept."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from allocations.choices import QuotaRequestStatus
from allocations.models import Desktop, QuotaRequest
from allocations.services import people, tenants
from allocations.services.quotas import desktop_hours_booked_this_month, desktop_hours_this_month, quota_lines
from allocations.tenant_forms import MemberForm, QuotaForm, RoleForm, TenantForm
from audit.models import AuditEvent, object_type_of
from core.errors import PortalError
from tenancy.models import Membership, Tenant
from tenancy.permissions import role_required
from tenancy.roles import ADMINS, OPERATORS, Role

#: How many of a person's audit events their page shows (the audit log has them all).
TRAIL_LENGTH = 50


def _in_words(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
    return " ".join(exc.messages)


def _refused(request, exc: Exception) -> None:
    messages.error(request, exc.message if isinstance(exc, PortalError) else _in_words(exc))


def _tenant(pk) -> Tenant:
    return get_object_or_404(Tenant.objects.select_related("quota"), pk=pk)


# --- Tenants ------------------------------------------------------------------------------------------


@role_required(OPERATORS)
def tenant_list(request):
    tenants_ = Tenant.objects.select_related("quota").annotate(
        members=Count("memberships", filter=Q(memberships__role=Role.TENANT_MEMBER))
    )
    rows = [{"tenant": t, "lines": quota_lines(t, t.quota)} for t in tenants_.order_by("name")]
    return render(request, "allocations/tenants.html", {"rows": rows})


@role_required(ADMINS)
def tenant_new(request):
    form = TenantForm(
        request.POST or None, initial={"max_desktops": 2, "max_framebuffer_gib": 16, "max_desktop_hours": 8}
    )
    if request.method == "POST" and form.is_valid():
        try:
            tenant = tenants.create_tenant(form.tenant_data(), actor=request.user)
        except (PortalError, ValidationError) as exc:
            _refused(request, exc)
        else:
            messages.success(request, f"Tenant {tenant.name} created: add its members below.")
            return redirect("tenant-page", pk=tenant.pk)
    return render(request, "allocations/tenant_new.html", {"form": form})


@role_required(OPERATORS)
def tenant_detail(request, pk):
    tenant = _tenant(pk)
    members = Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")
    return render(
        request,
        "allocations/tenant_detail.html",
        {
            "tenant": tenant,
            "lines": quota_lines(tenant, tenant.quota),
            "hours_this_month": desktop_hours_this_month(tenant),
            "members": members,
            "pending": QuotaRequest.objects.filter(tenant=tenant, status=QuotaRequestStatus.PENDING)
            .select_related("requested_by")
            .order_by("created_at"),
            "desktops": Desktop.objects.filter(tenant=tenant)
            .holding_capacity()
            .select_related("owner", "profile")
            .order_by("-requested_at"),
        },
    )


@require_POST
@role_required(ADMINS)
def tenant_active(request, pk):
    tenant = _tenant(pk)
    active = request.POST.get("active") == "1"
    try:
        tenants.update_tenant(tenant, {"is_active": active}, actor=request.user)
    except (PortalError, ValidationError) as exc:
        _refused(request, exc)
    else:
        state = "active again" if active else "inactive: it keeps its history but gets nothing new"
        messages.success(request, f"{tenant.name} is {state}.")
    return redirect("tenant-page", pk=tenant.pk)


# --- Quotas -------------------------------------------------------------------------------------------


@role_required(ADMINS)
def quota_edit(request, pk):
    tenant = _tenant(pk)
    form = QuotaForm(request.POST or None, quota=tenant.quota)
    if request.method == "POST" and form.is_valid():
        try:
            quota = tenants.update_quota(tenant.quota, form.quota_changes(), actor=request.user)
        except (PortalError, ValidationError) as exc:
            _refused(request, exc)
        else:
            over = [line for line in quota_lines(tenant, quota) if line.over]
            messages.success(request, f"{tenant.name}'s quota saved.")
            for line in over:
                messages.warning(
                    request,
                    f"{tenant.name} now uses more {line.label.lower()} than its new limit ({line.used} of "
                    f"{line.allowed}{' ' + line.unit if line.unit else ''}): what runs keeps running; new "
                    f"desktops are refused until it is under the limit.",
                )
            return redirect("tenant-page", pk=tenant.pk)
    return render(
        request,
        "allocations/quota_edit.html",
        {
            "tenant": tenant,
            "form": form,
            "lines": {line.key: line for line in quota_lines(tenant, tenant.quota)},
            "hours_this_month": desktop_hours_this_month(tenant),
            "hours_booked_this_month": round(desktop_hours_booked_this_month(tenant.pk), 1),
            "pending": QuotaRequest.objects.filter(tenant=tenant, status=QuotaRequestStatus.PENDING).select_related(
                "requested_by"
            ),
        },
    )


# --- People and their roles ---------------------------------------------------------------------------


def _back(request, membership_or_user_pk: int, tenant_pk: int | None):
    """Where a role form sends its admin back to: the tenant page it was posted from, or the person's."""
    if request.POST.get("back") == "tenant" and tenant_pk:
        return redirect("tenant-page", pk=tenant_pk)
    return redirect("person-page", pk=membership_or_user_pk)


@require_POST
@role_required(ADMINS)
def member_add(request):
    form = MemberForm(request.POST)
    tenant_pk = request.POST.get("tenant") if (request.POST.get("tenant") or "").isdigit() else None
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("tenant-page", pk=tenant_pk) if tenant_pk else redirect("people")
    data = form.cleaned_data
    try:
        membership, created = people.add_member(
            data["user"], role=data["role"], tenant=data["tenant"], actor=request.user
        )
    except (PortalError, ValidationError) as exc:
        _refused(request, exc)
        return redirect("tenant-page", pk=tenant_pk) if tenant_pk else redirect("people")
    person = membership.user.get_username()
    messages.success(
        request,
        f"{person} is now {membership.get_role_display().lower()}"
        + (f" of {membership.tenant.name}." if membership.tenant_id else "."),
    )
    if created:
        messages.warning(
            request, f"A new account {person} was made. " + people.NEW_ACCOUNT_NOTE.format(username=person)
        )
    return _back(request, membership.user_id, membership.tenant_id)


@require_POST
@role_required(ADMINS)
def membership_role(request, pk):
    membership = get_object_or_404(Membership.objects.select_related("user", "tenant"), pk=pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role (and a tenant for a tenant member).")
    else:
        try:
            changed = people.set_role(
                membership, form.cleaned_data["role"], tenant=form.cleaned_data["tenant"], actor=request.user
            )
        except (PortalError, ValidationError) as exc:
            _refused(request, exc)
        else:
            messages.success(request, f"{membership.user.get_username()} is now {changed.get_role_display().lower()}.")
    return _back(request, membership.user_id, membership.tenant_id)


@require_POST
@role_required(ADMINS)
def membership_delete(request, pk):
    membership = get_object_or_404(Membership.objects.select_related("user", "tenant"), pk=pk)
    text = str(membership)
    try:
        tenants.delete_membership(membership, actor=request.user)
    except (PortalError, ValidationError) as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Removed: {text}.")
    return _back(request, membership.user_id, membership.tenant_id)


@role_required(OPERATORS)
def person_list(request):
    User = get_user_model()
    query = (request.GET.get("q") or "").strip()[:150]
    users = User.objects.prefetch_related("memberships__tenant").order_by("username")
    if query:
        users = users.filter(Q(username__icontains=query) | Q(email__icontains=query))
    return render(
        request,
        "allocations/person_list.html",
        {"people": users[:200], "query": query, "member_form": MemberForm()},
    )


@role_required(OPERATORS)
def person_detail(request, pk):
    User = get_user_model()
    person = get_object_or_404(User, pk=pk)
    held = [str(pk) for pk in person.memberships.values_list("pk", flat=True)]
    trail = AuditEvent.objects.filter(
        Q(actor_id=person.pk)
        | Q(object_type=object_type_of(person), object_id=str(person.pk))
        | Q(object_type=object_type_of(Membership()), object_id__in=held)
    )[:TRAIL_LENGTH]
    return render(
        request,
        "allocations/person_detail.html",
        {
            "person": person,
            "memberships": person.memberships.select_related("tenant").order_by("role", "tenant__name"),
            "desktops": Desktop.objects.filter(owner=person).select_related("tenant", "profile")[:50],
            "quota_requests": QuotaRequest.objects.filter(requested_by=person).select_related("tenant")[:50],
            "trail": trail,
            "trail_length": TRAIL_LENGTH,
            "member_form": MemberForm(initial={"user": person.get_username()}),
            "roles": Role.choices,
            "tenants": Tenant.objects.order_by("name"),
        },
    )


@require_POST
@role_required(ADMINS)
def person_active(request, pk):
    person = get_object_or_404(get_user_model(), pk=pk)
    if request.POST.get("active") not in ("0", "1"):
        messages.error(request, "Say whether the account is to be active (active=1) or not (active=0).")
        return redirect("person-page", pk=person.pk)
    active = request.POST["active"] == "1"
    try:
        people.set_user_active(person, active, actor=request.user)
    except (PortalError, ValidationError) as exc:
        _refused(request, exc)
    else:
        if active:
            messages.success(request, f"{person.get_username()} may sign in again.")
        else:
            messages.success(
                request, f"{person.get_username()} is deactivated: signed out everywhere, their API tokens refused."
            )
    return redirect("person-page", pk=person.pk)
