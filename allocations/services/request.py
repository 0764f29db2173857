"""Requesting a desktop: quota, placement and the capacity claim in one transaction.

Order of locks (the same for every request, so requests never deadlock): the
tenant's Quota row (serialises one tenant's requests, so quota can never be
overrun), then the chosen host, then its GPUs (conditional updates in
``inventory.services.capacity``), in a savepoint: a claim that loses a race is
undone whole, its locks with it, and placement is retried on fresh data,
elsewhere than the contended host. The provision task is queued to the host's
own queue only once everything has committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import BooleanField

from allocations.choices import DesktopStatus
from allocations.exceptions import NoCapacity, NotAllowed, QuotaExceeded
from allocations.models import Desktop, DesktopTemplate, Quota
from allocations.placement import fleet as placement
from allocations.services.lifecycle import enqueue_host_task, record_desktop_event
from allocations.services.quotas import charge, check_monthly_hours, check_room, usage_of
from core.errors import NotFound, PortalError
from inventory.models import VGPUProfile
from inventory.services import capacity
from inventory.services.capacity import count_placement_failure
from tenancy.models import Tenant
from tenancy.roles import roles_of

CLAIM_ATTEMPTS = 8
FULL_READ_FROM_ATTEMPT = 2

#: Capacity held for later (issue 18): callables ``hold(template=, tenant_id=, hours=)`` that a higher layer
#: registers (bookings, in its AppConfig.ready) and that raise NoCapacity, saying why and when the capacity
#: frees up, when a desktop of ``template`` for ``hours`` from now would take capacity they hold.
CAPACITY_HOLDS: list = []


def check_holds(template: DesktopTemplate, tenant_id: int, hours: int) -> None:
    for hold in CAPACITY_HOLDS:
        hold(template=template, tenant_id=tenant_id, hours=hours)


def tenant_id_for(actor, tenant_id: int | None) -> int:
    """Which of the actor's tenants a request is for (no query: roles are cached on the user)."""
    tenant_ids = roles_of(actor).tenant_ids
    if tenant_id is not None:
        if tenant_id not in tenant_ids:
            raise NotFound("No such tenant among yours.")
        return tenant_id
    if not tenant_ids:
        raise NotAllowed("Only members of a tenant can request desktops.")
    if len(tenant_ids) > 1:
        raise PortalError("You belong to several tenants: say which one (tenant).")
    return next(iter(tenant_ids))


def check_active(tenant: Tenant) -> Tenant:
    if not tenant.is_active:
        raise NotAllowed(f"{tenant.name} is inactive: it keeps its history but gets nothing new.")
    return tenant


def resolve_tenant(actor, tenant_id: int | None) -> Tenant:
    return check_active(Tenant.objects.get(pk=tenant_id_for(actor, tenant_id)))


@dataclass(frozen=True)
class Grant:
    """What one desktop of a template would take: the placement's choice, the vGPU profile it gets
    (a share template's is chosen by the placement) and the framebuffer it charges to the quota."""

    choice: placement.Choice
    profile: VGPUProfile | None
    framebuffer_mib: int


def check_quota_first(quota: Quota, usage, template: DesktopTemplate) -> None:
    """The quota checks that do not depend on where the desktop lands."""
    if template.profile_id:
        check_room(quota, usage, framebuffer_mib=template.profile.framebuffer_mib, profile_name=template.profile.name)
    else:
        check_room(quota, usage, framebuffer_mib=0, profile_name=None)  # desktops count; the rest once placed


def decide(template: DesktopTemplate, quota: Quota, usage, *, fresh: bool = False, avoid=frozenset()) -> Grant:
    """Where a desktop of ``template`` would go now and what it would charge; raises NoCapacity, or
    QuotaExceeded when what the placement chose (a share's profile, whole boards) is over quota.
    Claims nothing: ``request_desktop`` claims the grant, the New-desktop page only shows it."""
    try:
        choice = placement.place(template, fresh=fresh, avoid=avoid)
    except placement.NoPlacement as exc:
        raise NoCapacity(exc.message, details={"resource": exc.resource}) from exc
    return grant_for(template, choice, quota, usage)


def grant_for(template: DesktopTemplate, choice, quota: Quota, usage) -> Grant:
    """What ``choice`` (the placement's answer for ``template``) would charge, checked against the quota:
    raises QuotaExceeded when a share's profile or whole boards the placement chose are over it."""
    if choice.profile_id:
        profile = template.profile if template.profile_id == choice.profile_id else placement.profile(choice.profile_id)
        grant = Grant(choice, profile, profile.framebuffer_mib)
    else:
        grant = Grant(choice, None, choice.whole_framebuffer_mib)
    if not template.profile_id:
        check_room(
            quota,
            usage,
            framebuffer_mib=grant.framebuffer_mib,
            profile_name=grant.profile.name if grant.profile else None,
        )
    return grant


def _claim(template: DesktopTemplate, grant: Grant) -> bool:
    """Take the grant's capacity, all or nothing. It runs in a savepoint: a claim that fails is undone
    whole and its row locks go with it (a request retrying elsewhere must not keep the host it lost
    locked, or two such requests could each wait for the other's)."""
    sid = transaction.savepoint()
    if _take(template, grant.choice, grant.profile):
        transaction.savepoint_commit(sid)
        return True
    transaction.savepoint_rollback(sid)
    return False


def _take(template: DesktopTemplate, choice: placement.Choice, profile: VGPUProfile | None) -> bool:
    if not capacity.claim_host(choice.host_id, template.vcpus, template.memory_mib):
        return False
    if profile is not None:
        return capacity.claim_vgpu(choice.gpu_ids[0], profile, choice.host_id)
    if choice.gpu_ids:
        return capacity.claim_whole_gpus(list(choice.gpu_ids), choice.host_id)
    return True


def request_desktop(
    *, actor, template_id: int, duration_hours: int, name: str = "", tenant_id=None, queue_provisioning: bool = True
) -> Desktop:
    """Ask for a desktop (see ``_request_desktop``); placement failures are counted by reason for /metrics,
    outside the transaction that rolled back. ``queue_provisioning=False`` claims and records without
    building anything (the trace replay's scratch database has no hosts to build on)."""
    try:
        return _request_desktop(
            actor=actor,
            template_id=template_id,
            duration_hours=duration_hours,
            name=name,
            tenant_id=tenant_id,
            queue_provisioning=queue_provisioning,
        )
    except NoCapacity as exc:
        count_placement_failure(exc.details.get("resource", "unknown"))
        raise


# The reads at the head of every request, in plain SQL through ``Model.objects.raw`` (which still
# converts values per database): the ORM's query building cost two to three times what these
# statements cost PostgreSQL (measured in bench/README.md, "Through the request service").
def _lock_quota(tenant_id: int) -> Quota | None:
    """The tenant's quota row, locked until commit, with its tenant's id, name and state."""
    lock = ""
    if connection.features.has_select_for_update:
        lock = " FOR UPDATE OF q" if connection.features.has_select_for_update_of else " FOR UPDATE"
    rows = list(
        Quota.objects.raw(
            f"SELECT q.*, t.name AS tenant_name, t.is_active AS tenant_active FROM {Quota._meta.db_table} q "
            f"JOIN {Tenant._meta.db_table} t ON t.id = q.tenant_id WHERE q.tenant_id = %s{lock}",
            [tenant_id],
        )
    )
    if not rows:
        return None
    quota = rows[0]
    # the tenant's other fields load on first use, like any deferred field
    quota.tenant = Tenant.from_db(
        connection.alias, ["id", "name", "is_active"], [tenant_id, quota.tenant_name, bool(quota.tenant_active)]
    )
    return quota


_PROFILE_FIELDS = VGPUProfile._meta.concrete_fields
_PROFILE_COLUMNS = ", ".join(f'p.{f.column} AS "profile__{f.attname}"' for f in _PROFILE_FIELDS)


def _offered_template(template_id: int, tenant_id: int) -> DesktopTemplate | None:
    """The template if it is offered to the tenant (active or not: ``check_offered`` says), with its named
    profile (if any)."""
    through = DesktopTemplate.allowed_tenants.through._meta.db_table
    rows = list(
        DesktopTemplate.objects.raw(
            f"SELECT d.*, {_PROFILE_COLUMNS} FROM {DesktopTemplate._meta.db_table} d "
            f"JOIN {through} a ON a.desktoptemplate_id = d.id AND a.tenant_id = %s "
            f"LEFT JOIN {VGPUProfile._meta.db_table} p ON p.id = d.profile_id "
            f"WHERE d.id = %s",
            [tenant_id, template_id],
        )
    )
    if not rows:
        return None
    template = rows[0]
    if template.profile_id is not None:
        values = [getattr(template, f"profile__{f.attname}") for f in _PROFILE_FIELDS]
        values = [bool(v) if isinstance(f, BooleanField) else v for f, v in zip(_PROFILE_FIELDS, values, strict=True)]
        template.profile = VGPUProfile.from_db(connection.alias, [f.attname for f in _PROFILE_FIELDS], values)
    return template


def check_offered(template: DesktopTemplate | None, duration_hours: int) -> DesktopTemplate:
    """A template offered to the tenant takes new desktops unless retired or switched off, and no desktop
    longer than its own maximum (the tenant's quota has its own, checked too)."""
    if template is None or not (template.is_active or template.retired_at):
        raise NotFound("No such desktop template is offered to your tenant.")
    if template.retired_at:
        raise NotAllowed(
            f"{template.name} was retired on {template.retired_at:%Y-%m-%d}: it takes no new desktops "
            "(those running keep it). Choose another template."
        )
    if template.max_duration_hours and duration_hours > template.max_duration_hours:
        raise QuotaExceeded(
            f"A desktop of {template.name} may last at most {template.max_duration_hours} hours; "
            f"you asked for {duration_hours}.",
            details={"resource": "desktop_hours", "allowed": template.max_duration_hours, "requested": duration_hours},
        )
    return template


def _request_desktop(
    *, actor, template_id: int, duration_hours: int, name: str = "", tenant_id=None, queue_provisioning: bool = True
) -> Desktop:
    """Ask for a desktop. Returns it REQUESTED with its capacity claimed and provisioning queued;
    raises NotFound/NotAllowed, QuotaExceeded or NoCapacity (409) with a message for people."""
    tenant_id = tenant_id_for(actor, tenant_id)
    if duration_hours < 1:
        raise PortalError("A desktop lasts at least one hour (duration_hours ≥ 1).")
    with transaction.atomic():
        quota = _lock_quota(tenant_id)  # first: one tenant's requests queue up here
        if quota is None:
            tenant = Tenant.objects.filter(pk=tenant_id).first()
            if tenant is None:
                raise NotFound("No such tenant among yours.")
            raise NotAllowed(f"{tenant.name} has no quota yet: a platform admin sets one before it can have desktops.")
        tenant = check_active(quota.tenant)
        template = check_offered(_offered_template(template_id, tenant_id), duration_hours)
        if duration_hours > quota.max_desktop_hours:
            raise QuotaExceeded(
                f"A desktop may last at most {quota.max_desktop_hours} hours; you asked for {duration_hours}.",
                details={"resource": "desktop_hours", "allowed": quota.max_desktop_hours, "requested": duration_hours},
            )
        check_monthly_hours(quota, hours=duration_hours)  # under the quota row's lock, taken above
        usage = usage_of(tenant, quota)
        check_quota_first(quota, usage, template)
        check_holds(template, tenant_id, duration_hours)
        contended: set[int] = set()  # hosts where this request lost a claim to another one
        for attempt in range(CLAIM_ATTEMPTS):
            # After a lost claim go elsewhere than where others are filling up. The refresh before each
            # decision reads the hosts the winner changed; from the third try on, every row is read again
            # (a view wrong for a reason the versions do not show would otherwise lose every time).
            grant = decide(template, quota, usage, fresh=attempt >= FULL_READ_FROM_ATTEMPT, avoid=frozenset(contended))
            if _claim(template, grant):
                break
            contended.add(grant.choice.host_id)
        else:
            raise NoCapacity(
                "Capacity changed while placing your desktop and none was left; try again.",
                details={"resource": "contention"},
            )
        charge(quota.pk, grant.framebuffer_mib)
        desktop = _create(actor, tenant, template, grant, duration_hours, name)
        if queue_provisioning:
            enqueue_host_task("provision", desktop)
    return desktop


def _create(actor, tenant, template, grant: Grant, duration_hours, name) -> Desktop:
    decision, profile = grant.choice, grant.profile
    desktop = Desktop.objects.create(
        name=(name or template.name)[:100],
        tenant=tenant,
        owner=actor,
        template=template,
        profile=profile,
        gpu_count=template.gpu_count,
        vcpus=template.vcpus,
        memory_mib=template.memory_mib,
        framebuffer_mib=grant.framebuffer_mib,
        duration_hours=duration_hours,
        status=DesktopStatus.REQUESTED,
        host_id=decision.host_id,
        mdev_uuid=uuid.uuid4() if profile else None,
        domain_uuid=uuid.uuid4(),
    )
    if decision.gpu_ids:
        with connection.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {Desktop.gpus.through._meta.db_table} (desktop_id, gpu_id) VALUES (%s, %s)",
                [(desktop.pk, gpu_id) for gpu_id in decision.gpu_ids],
            )
    desktop.tenant = tenant  # the row as written; its libvirt domain name is given when it is built
    # the audit event last: it holds the chain's head row until commit, so concurrent requests queue
    # there for as short a time as possible
    record_desktop_event(
        desktop,
        "desktop.requested",
        actor=actor,
        before={},
        after={
            "status": desktop.status,
            "template": template.name,
            "profile": profile.name if profile else None,
            "gpu_count": desktop.gpu_count,
            "host": decision.host_id,
            "gpus": list(decision.gpu_ids),
            "duration_hours": duration_hours,
            "framebuffer_mib": grant.framebuffer_mib,
        },
    )
    return desktop
