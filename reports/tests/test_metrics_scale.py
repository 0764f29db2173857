"""Issue 19: /metrics at a large fleet stays small by default (portal-level, per-host and per-tenant
aggregates, computed in SQL); per-board series come for a small fleet or on request, per-vGPU series
only on request (``?vgpu=1``) or for one host (``?host=``). Before, every vGPU's and every board's
latest sample was a series: 10 MB and 7.3 s at 1,213 hosts with 4 vGPUs per GPU."""

import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.tests.factories import make_template
from inventory.choices import HostState
from inventory.drivers.telemetry import GPUTelemetry, HostTelemetry, VGPUTelemetry
from inventory.models import VGPUProfile
from inventory.services.utilization import record_sample
from inventory.tests.factories import make_gpu, make_host

pytestmark = pytest.mark.django_db


def build(count: int, *, start: int = 0, tenant=None, owner=None, template=None) -> list[str]:
    """``count`` hosts of two A40 boards, each board sampled (SM 10 × board number + host number % 10), the
    first board of each host running one vGPU of ``tenant``'s desktop; returns the vGPUs' uuids."""
    profile = VGPUProfile.objects.get(name="A40-8Q")
    mdevs = []
    for i in range(start, start + count):
        host = make_host(f"node-{i:04d}")
        boards = []
        for b in (1, 2):
            make_gpu(host, f"0000:0{b}:00.0", current_profile=profile, uuid=f"GPU-{i:04d}-{b}")
            vgpus = ()
            if b == 1 and tenant is not None:
                mdev = str(uuid.uuid4())
                mdevs.append(mdev)
                Desktop.objects.create(
                    name=f"d{i}",
                    tenant=tenant,
                    owner=owner,
                    template=template,
                    profile=profile,
                    vcpus=4,
                    memory_mib=8192,
                    framebuffer_mib=8192,
                    duration_hours=2,
                    status=DesktopStatus.RUNNING,
                    host=host,
                    mdev_uuid=mdev,
                )
                vgpus = (VGPUTelemetry(mdev, "A40-8Q", 40.0, 5.0, 0.0, 0.0, 1000),)
            boards.append(
                GPUTelemetry(
                    f"0000:0{b}:00.0",
                    f"GPU-{i:04d}-{b}",
                    "NVIDIA A40",
                    sm_util=10.0 * b + i % 10,
                    mem_util=5.0,
                    fb_used_mib=1000 * b,
                    fb_total_mib=49152,
                    temperature_c=50.0 + b,
                    power_w=100.0,
                    vgpus=vgpus,
                )
            )
        record_sample(host, HostTelemetry("simulated", "ok", time.time(), tuple(boards)))
    return mdevs


@pytest.fixture
def scraper(client, auditor):
    client.force_login(auditor)

    def get(query=""):
        response = client.get("/metrics" + query)
        assert response.status_code == 200
        return response.content.decode()

    return get


def series(body: str, name: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]


def test_default_has_per_host_and_tenant_aggregates_and_no_vgpu_series(
    scraper, catalog, tenant, tenant_member, settings
):
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    mdevs = build(3, tenant=tenant, owner=tenant_member, template=template)
    make_host("down", state=HostState.OFFLINE)
    body = scraper()
    assert series(body, "portal_vgpu_sm_utilization_percent") == []
    assert series(body, "portal_host_gpu_sm_utilization_percent") == [
        'portal_host_gpu_sm_utilization_percent{host="node-0000"} 15',  # mean of 10 and 20
        'portal_host_gpu_sm_utilization_percent{host="node-0001"} 16',
        'portal_host_gpu_sm_utilization_percent{host="node-0002"} 17',
    ]
    assert 'portal_host_gpu_framebuffer_used_mib{host="node-0001"} 3000' in body  # summed
    assert 'portal_host_gpu_temperature_celsius{host="node-0001"} 52' in body  # the hottest
    assert 'portal_host_gpus_reporting{host="node-0002"} 2' in body
    assert 'portal_hosts{state="online"} 3' in body and 'portal_hosts{state="offline"} 1' in body
    assert 'portal_gpus{model="A40",busy="false"} 6' in body
    assert series(body, "portal_tenant_vgpu_sm_utilization_percent") == [
        'portal_tenant_vgpu_sm_utilization_percent{tenant="acme"} 40'
    ]
    assert 'portal_tenant_vgpus_reporting{tenant="acme"} 3' in body
    assert 'portal_tenant_vgpu_framebuffer_used_mib{tenant="acme"} 3000' in body
    # opt in: every vGPU, with its owner's tenant
    opted = scraper("?vgpu=1")
    lines = series(opted, "portal_vgpu_sm_utilization_percent")
    assert len(lines) == 3
    labels = f'host="node-0000",pci="0000:01:00.0",mdev_uuid="{mdevs[0]}",tenant="acme"'
    assert f"portal_vgpu_sm_utilization_percent{{{labels}}} 40.0" in lines


def test_per_board_series_by_default_only_for_a_small_fleet(scraper, catalog, settings):
    build(3)
    assert len(series(scraper(), "portal_gpu_sm_utilization_percent")) == 6  # 6 boards ≤ the default 512
    settings.PORTAL_METRICS_PER_GPU_UP_TO = 4
    assert series(scraper(), "portal_gpu_sm_utilization_percent") == []
    assert len(series(scraper("?gpu=1"), "portal_gpu_sm_utilization_percent")) == 6
    assert series(scraper("?gpu=0"), "portal_gpu_sm_utilization_percent") == []
    line = 'portal_gpu_sm_utilization_percent{host="node-0001",pci="0000:02:00.0",model="A40",uuid="GPU-0001-2"} 21.0'
    assert line in scraper("?gpu=1")


def test_one_host_scrape_has_its_boards_and_vgpus_only(scraper, client, catalog, tenant, tenant_member):
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    build(3, tenant=tenant, owner=tenant_member, template=template)
    body = scraper("?host=node-0001")
    assert len(series(body, "portal_gpu_sm_utilization_percent")) == 2
    assert len(series(body, "portal_vgpu_sm_utilization_percent")) == 1
    assert series(body, "portal_host_gpu_sm_utilization_percent") == [
        'portal_host_gpu_sm_utilization_percent{host="node-0001"} 16'
    ]
    assert all('host="node-0001"' in line for line in series(body, "portal_vgpu_framebuffer_used_mib"))
    assert client.get("/metrics?host=nope").status_code == 404


def test_metrics_cost_the_same_queries_at_10_and_40_hosts(client, auditor, catalog, tenant, tenant_member):
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    client.force_login(auditor)
    build(10, tenant=tenant, owner=tenant_member, template=template)
    with CaptureQueriesContext(connection) as small:
        client.get("/metrics?vgpu=1&gpu=1")
    build(30, start=10, tenant=tenant, owner=tenant_member, template=template)
    with CaptureQueriesContext(connection) as large:
        body = client.get("/metrics?vgpu=1&gpu=1").content.decode()
    assert len(large.captured_queries) == len(small.captured_queries) <= 16
    assert len(series(body, "portal_vgpu_sm_utilization_percent")) == 40
