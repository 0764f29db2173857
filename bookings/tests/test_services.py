"""Booking rules: running desktops until they expire, quota, who may book for a group, and the hold that
on-demand requests respect (409 with the reason and when it frees up)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from allocations.exceptions import NoCapacity, NotAllowed, QuotaExceeded
from allocations.models import Desktop, Quota
from allocations.services.request import request_desktop
from allocations.tests.factories import make_membership, make_user
from bookings.access import managed_tenant_ids
from bookings.models import GroupBooker
from bookings.services import book, cancel_booking
from bookings.tests.conftest import NOW, at
from core.errors import Forbidden, NotFound
from tenancy.roles import Role


def test_a_running_desktop_counts_until_it_expires(board, tenant_member):
    _, template = board
    desktop = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=2)
    Desktop.objects.filter(pk=desktop.pk).update(expires_at=at(2, 12))
    with pytest.raises(NoCapacity) as exc:
        book(actor=tenant_member, template_id=template.pk, start=at(2, 11), end=at(2, 13), now=NOW)
    assert "1 desktop(s) still running then" in exc.value.message
    assert book(actor=tenant_member, template_id=template.pk, start=at(2, 12), end=at(2, 13), now=NOW).pk


def test_booking_over_the_concurrent_desktops_quota_is_refused(board, tenant, tenant_member, platform_admin):
    _, template = board
    tenant.quota.max_desktops = 1
    tenant.quota.save()
    book(actor=tenant_member, template_id=template.pk, start=at(2, 10), end=at(2, 11), now=NOW)
    bob = make_user("bob")
    make_membership(bob, Role.TENANT_MEMBER, tenant)
    with pytest.raises(QuotaExceeded) as exc:
        book(actor=bob, template_id=template.pk, start=at(2, 10, 30), end=at(2, 12), now=NOW)
    assert "may hold 1 desktops at once" in exc.value.message


def test_booking_over_the_monthly_hours_is_refused(board, tenant, tenant_member):
    _, template = board
    tenant.quota.max_desktop_hours_per_month = 5
    tenant.quota.save()
    with pytest.raises(QuotaExceeded) as exc:
        book(
            actor=tenant_member,
            template_id=template.pk,
            start=at(2, 10),
            end=at(2, 12),
            rrule="FREQ=WEEKLY;COUNT=3",
            now=NOW,
        )
    assert "in March 2027 it has 0.0 used or booked and this booking needs 6.0 more" in exc.value.message
    assert exc.value.details["resource"] == "desktop_hours_per_month"


def test_a_member_books_only_one_desktop_for_themselves(board, tenant, tenant_member):
    _, template = board
    bob = make_user("bob")
    make_membership(bob, Role.TENANT_MEMBER, tenant)
    with pytest.raises(Forbidden):
        book(actor=tenant_member, template_id=template.pk, start=at(2, 10), end=at(2, 11), count=2, now=NOW)
    with pytest.raises(Forbidden):
        book(actor=tenant_member, template_id=template.pk, start=at(2, 10), end=at(2, 11), people=[bob.pk], now=NOW)


def test_a_manager_granted_group_booking_in_the_tenant_books_for_a_group(lab, board, tenant, tenant_member):
    _, template = board
    lab("lab-b=A40x1")
    bob = make_user("bob")
    make_membership(bob, Role.TENANT_MEMBER, tenant)
    GroupBooker.objects.create(user=tenant_member, tenant=tenant)
    booking = book(
        actor=tenant_member,
        template_id=template.pk,
        start=at(2, 10),
        end=at(2, 11),
        people=[tenant_member.pk, bob.pk],
        now=NOW,
    )
    assert booking.count == 2
    assert set(booking.people.values_list("username", flat=True)) == {"alice", "bob"}


def test_nobody_books_in_another_tenant_or_for_its_people(board, tenant, tenant_member, outsider):
    _, template = board
    with pytest.raises(NotFound):
        book(actor=outsider, template_id=template.pk, start=at(2, 10), end=at(2, 11), tenant_id=tenant.pk, now=NOW)
    with pytest.raises(NotFound):  # the template is not offered to the outsider's tenant
        book(actor=outsider, template_id=template.pk, start=at(2, 10), end=at(2, 11), now=NOW)


def test_an_on_demand_request_that_would_take_booked_capacity_is_refused_with_when_it_frees(board, tenant_member):
    _, template = board
    start = timezone.now().replace(microsecond=0) + timedelta(hours=2)
    book(actor=tenant_member, template_id=template.pk, start=start, end=start + timedelta(hours=2))
    with pytest.raises(NoCapacity) as exc:
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=3)
    assert "That capacity is booked from" in exc.value.message
    assert exc.value.details["frees_at"] == (start + timedelta(hours=2)).isoformat()
    assert request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1).pk  # ends before it


def test_booking_for_a_tenant_without_a_quota_row_is_not_allowed_not_a_500(board, tenant, tenant_member):
    """Reproduction: with the tenant's Quota row deleted, book() raised Quota.DoesNotExist (a 500)."""
    _, template = board
    Quota.objects.filter(tenant=tenant).delete()
    with pytest.raises(NotAllowed, match="has no quota yet"):
        book(actor=tenant_member, template_id=template.pk, start=at(2, 10), end=at(2, 11), now=NOW)


def test_a_409_to_another_tenants_requester_does_not_name_the_booking(
    board, tenant, tenant_member, other_tenant, outsider
):
    """Reproduction: an on-demand request by a member of another tenant was refused with the booking's title
    and id (details.booking) of a tenant not theirs."""
    _, template = board
    template.allowed_tenants.add(other_tenant)
    other_tenant.quota.max_desktops = 10
    other_tenant.quota.max_framebuffer_mib = 10**7
    other_tenant.quota.max_desktop_hours = 24
    other_tenant.quota.save()
    start = timezone.now().replace(microsecond=0) + timedelta(hours=2)
    book(actor=tenant_member, template_id=template.pk, start=start, end=start + timedelta(hours=2), title="Secret lab")
    with pytest.raises(NoCapacity) as exc:
        request_desktop(actor=outsider, template_id=template.pk, duration_hours=3)
    assert "booked for a class or project" in exc.value.message
    assert "Secret lab" not in exc.value.message
    assert "booking" not in exc.value.details
    assert exc.value.details["frees_at"] == (start + timedelta(hours=2)).isoformat()
    with pytest.raises(NoCapacity) as own:
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=3)
    assert "Secret lab" in own.value.message and "booking" in own.value.details


def test_group_booking_granted_in_tenant_a_does_not_apply_in_tenant_b(lab, board, tenant, other_tenant):
    """Reproduction: the global bookings.book_for_group permission let a teacher of tenant A, a plain member
    of tenant B, book for B's people and cancel B's bookings."""
    _, template = board
    lab("lab-b=A40x1")
    template.allowed_tenants.add(other_tenant)
    other_tenant.quota.max_desktops = 10
    other_tenant.quota.max_framebuffer_mib = 10**7
    other_tenant.quota.max_desktop_hours = 24
    other_tenant.quota.save()
    teacher, bob, carol = make_user("teacher"), make_user("bob"), make_user("carol")
    make_membership(teacher, Role.TENANT_MEMBER, tenant)
    make_membership(teacher, Role.TENANT_MEMBER, other_tenant)
    make_membership(bob, Role.TENANT_MEMBER, other_tenant)
    make_membership(carol, Role.TENANT_MEMBER, other_tenant)
    teacher.user_permissions.add(Permission.objects.get(codename="book_for_group"))  # alone: not enough
    teacher = type(teacher).objects.get(pk=teacher.pk)
    with pytest.raises(Forbidden):
        book(
            actor=teacher,
            template_id=template.pk,
            start=at(2, 10),
            end=at(2, 11),
            people=[bob.pk],
            tenant_id=other_tenant.pk,
            now=NOW,
        )
    GroupBooker.objects.create(user=teacher, tenant=tenant)
    with pytest.raises(Forbidden):
        book(
            actor=teacher,
            template_id=template.pk,
            start=at(2, 10),
            end=at(2, 11),
            people=[bob.pk],
            tenant_id=other_tenant.pk,
            now=NOW,
        )
    theirs = book(actor=carol, template_id=template.pk, start=at(2, 12), end=at(2, 13), now=NOW)
    with pytest.raises(Forbidden):
        cancel_booking(theirs, actor=teacher)
    assert managed_tenant_ids(teacher) == {tenant.pk}
    GroupBooker.objects.create(user=teacher, tenant=other_tenant)
    assert cancel_booking(theirs, actor=teacher).state == "cancelled"
