"""Group booking is granted per tenant, by platform admins, in the admin (audited)."""

from __future__ import annotations

from audit.models import AuditEvent
from bookings.models import GroupBooker


def test_a_platform_admin_grants_group_booking_for_one_tenant_in_the_admin(
    client, platform_admin, tenant, tenant_member
):
    platform_admin.is_staff = platform_admin.is_superuser = True
    platform_admin.save()
    client.force_login(platform_admin)
    response = client.post(
        "/admin/bookings/groupbooker/add/", {"user": tenant_member.pk, "tenant": tenant.pk}, follow=False
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert GroupBooker.objects.filter(user=tenant_member, tenant=tenant).exists()
    assert AuditEvent.objects.filter(object_type__icontains="groupbooker").exists()


def test_staff_who_is_not_a_platform_admin_cannot_grant_group_booking(client, tenant, tenant_member):
    tenant_member.is_staff = True
    tenant_member.save()
    client.force_login(tenant_member)
    assert client.get("/admin/bookings/groupbooker/add/").status_code == 403
