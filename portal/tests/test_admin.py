"""Changes made in the Django admin go through the services: validated, guarded and audited."""

import pytest

from allocations.models import Quota
from audit.models import AuditEvent
from inventory.models import GPU, Host
from inventory.tests.factories import make_gpu, make_host, make_profile
from tenancy.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, platform_admin):
    platform_admin.is_staff = platform_admin.is_superuser = True
    platform_admin.save()
    client.force_login(platform_admin)
    return client


def test_adding_and_changing_a_host_in_the_admin_is_audited(admin_client):
    response = admin_client.post(
        "/admin/inventory/host/add/",
        {
            "name": "gpu-9",
            "libvirt_uri": "qemu:///system",
            "state": "offline",
            "cpu_cores": 8,
            "memory_mib": 1024,
            "telemetry_source": "nvml",
            "notes": "",
            "vcpus_used": 0,
            "memory_used_mib": 0,
            "gpus-TOTAL_FORMS": 0,
            "gpus-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content[:2000]
    host = Host.objects.get(name="gpu-9")
    assert AuditEvent.objects.filter(verb="host.created", object_id=str(host.pk)).exists()


def test_a_tenant_added_in_the_admin_gets_its_quota_and_audit(admin_client):
    response = admin_client.post(
        "/admin/tenancy/tenant/add/",
        {
            "name": "Initech",
            "slug": "initech",
            "description": "",
            "is_active": "on",
            "quota-TOTAL_FORMS": 0,
            "quota-INITIAL_FORMS": 0,
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content[:3000]
    tenant = Tenant.objects.get(slug="initech")
    assert Quota.objects.filter(tenant=tenant).exists()
    assert AuditEvent.objects.filter(verb="tenant.created", tenant_id=tenant.pk).exists()


def test_the_admin_cannot_change_a_gpus_mode_under_running_desktops(admin_client):
    gpu = make_gpu(make_host(), current_profile=make_profile("A40-8Q"), instances_used=1)
    response = admin_client.post(
        f"/admin/inventory/gpu/{gpu.pk}/change/",
        {
            "host": gpu.host_id,
            "pci_address": gpu.pci_address,
            "uuid": "",
            "model": "A40",
            "framebuffer_mib": 49152,
            "mode": "passthrough",
            "current_profile": "",
            "instances_used": 1,
            "present": "on",
            "mdev_types-TOTAL_FORMS": 0,
            "mdev_types-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200 and b"Desktops hold instances on this GPU" in response.content
    assert GPU.objects.get(pk=gpu.pk).mode == "vgpu"
    assert not AuditEvent.objects.filter(verb="gpu.updated").exists()
