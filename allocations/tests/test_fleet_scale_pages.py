"""Issue 19: the pages an operator opens cost the same number of queries at 10 hosts as at 100 (the fleet
overview shows aggregates and one page of hosts, with search and filters), and /desktops/new/ costs the
same with 10 offered templates as with 100 (one reading of the fleet for all of them, not one placement
and ~1.4 queries per template)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from allocations.choices import DesktopStatus
from allocations.exceptions import NoCapacity, QuotaExceeded
from allocations.models import Desktop, ProfileQuota
from allocations.services.availability import offers_for
from allocations.services.fleet import HOSTS_PER_PAGE
from allocations.services.quotas import usage_of
from allocations.services.request import check_quota_first, decide
from allocations.tests.factories import make_template
from inventory.choices import GPUMode, HostState
from inventory.models import VGPUProfile
from inventory.tests.factories import make_gpu, make_host

pytestmark = pytest.mark.django_db


def profile(name):
    return VGPUProfile.objects.get(name=name)


def add_hosts(start: int, count: int) -> None:
    """``count`` hosts: two A40 boards each (one running A40-8Q with a desktop's instance), every fifth an
    A16 host in maintenance."""
    for i in range(start, start + count):
        odd = i % 5 == 4
        host = make_host(f"node-{i:04d}", state=HostState.MAINTENANCE if odd else HostState.ONLINE)
        model = {"model": "A16", "framebuffer_mib": 16384} if odd else {}
        make_gpu(host, "0000:01:00.0", current_profile=None if odd else profile("A40-8Q"), instances_used=0, **model)
        make_gpu(host, "0000:02:00.0", mode=GPUMode.PASSTHROUGH, **model)


def queries(client, url) -> int:
    """Queries of one view of ``url`` (after one that lets the placement fleet read the rows just added)."""
    client.get(url)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return len(ctx.captured_queries)


def test_fleet_overview_costs_the_same_queries_at_10_and_100_hosts(client, catalog, platform_admin):
    """Before: every host and every GPU of the fleet rendered as tiles (3 MB, 2.3 s at 1,213 hosts)."""
    make_template("CAD", profile=profile("A40-8Q"))
    client.force_login(platform_admin)
    add_hosts(0, 10)
    at_10 = queries(client, "/inventory/")
    add_hosts(10, 90)
    at_100 = queries(client, "/inventory/")
    assert at_100 == at_10 <= 25
    for url in ("/inventory/hosts/", "/inventory/hosts/node-0042/", "/", "/api/hosts/", "/api/fleet/overview/"):
        before = queries(client, url)
        add_hosts(1000 + 10 * len(url), 10)
        assert queries(client, url) == before, url


def test_fleet_overview_shows_one_page_of_hosts_and_the_aggregates_of_all(client, catalog, platform_admin):
    add_hosts(0, 60)
    client.force_login(platform_admin)
    page = client.get("/inventory/").content.decode()
    assert page.count('class="card host"') == HOSTS_PER_PAGE
    assert 'href="/inventory/hosts/node-0000/"' in page and "node-0025" not in page
    assert "Page 1 of 3" in page and "60 hosts" in page
    summary = page.split('id="fleet-summary"')[1].split("</section>")[0]
    assert "48 online" in summary and "12 maintenance" in summary
    assert '<tr data-model="A40"><td><a href="?model=A40">A40</a></td><td>48</td><td>96</td>' in summary
    last = client.get("/inventory/?page=3").content.decode()
    assert last.count('class="card host"') == 10 and "node-0059" in last and "← Previous" in last
    assert client.get("/inventory/?page=99").status_code == 200  # past the end: the last page


def test_fleet_overview_searches_and_filters_hosts(client, catalog, platform_admin, tenant, tenant_member):
    add_hosts(0, 30)
    template = make_template("CAD", profile=profile("A40-8Q"), tenants=[tenant])
    desktop = Desktop.objects.create(
        name="d",
        tenant=tenant,
        owner=tenant_member,
        template=template,
        profile=profile("A40-8Q"),
        vcpus=4,
        memory_mib=8192,
        framebuffer_mib=8192,
        duration_hours=2,
        status=DesktopStatus.RUNNING,
        host=make_host("tenant-host"),
    )
    client.force_login(platform_admin)

    def hosts(query):
        page = client.get("/inventory/", query).content.decode()
        return [chunk.split('"')[0] for chunk in page.split('<h2><a href="/inventory/hosts/')[1:]]

    assert hosts({"q": "node-001"}) == [f"node-001{i}/" for i in range(10)]
    assert hosts({"model": "A16"}) == [f"node-{i:04d}/" for i in range(4, 30, 5)]
    assert hosts({"state": "maintenance", "q": "node-000"}) == ["node-0004/", "node-0009/"]
    assert hosts({"tenant": tenant.slug}) == ["tenant-host/"]
    assert hosts({"state": "nonsense", "q": "tenant"}) == ["tenant-host/"]  # an unknown state is no filter
    empty = client.get("/inventory/", {"q": "nothing-like-it"}).content.decode()
    assert "No host matches these filters." in empty
    desktop.status = DesktopStatus.RELEASED
    desktop.holds_capacity = False
    desktop.save()
    assert hosts({"tenant": tenant.slug}) == []  # only desktops holding capacity put a host under a tenant


def test_host_list_pages_and_filters(client, catalog, platform_admin):
    add_hosts(0, 120)
    client.force_login(platform_admin)
    page = client.get("/inventory/hosts/").content.decode()
    assert page.count("<tr data-host=") == 100 and "Page 1 of 2" in page
    found = client.get("/inventory/hosts/", {"q": "node-011", "state": "maintenance"}).content.decode()
    assert found.count("<tr data-host=") == 2 and 'data-host="node-0114"' in found and 'data-host="node-0119"' in found


def _offered(count: int, tenant, start: int = 0) -> None:
    """``count`` templates of three kinds: an A40-8Q share (fits), a whole L40S (no such board), an A16 share
    (none online)."""
    for i in range(start, start + count):
        kind = i % 3
        if kind == 0:
            make_template(f"T{i:03d}", profile=profile("A40-8Q"), tenants=[tenant], vcpus=2, memory_mib=2048)
        elif kind == 1:
            make_template(f"T{i:03d}", gpu_count=1, gpu_models=["L40S"], tenants=[tenant])
        else:
            make_template(f"T{i:03d}", profile=profile("A16-16Q"), tenants=[tenant], vcpus=2, memory_mib=2048)


def test_new_desktop_page_costs_the_same_queries_for_10_and_100_templates(client, catalog, tenant, tenant_member):
    """Before: one placement and ~1.4 queries per offered template (212 queries for 151 templates)."""
    tenant.quota.max_desktops = 50
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    ProfileQuota.objects.create(quota=tenant.quota, profile=profile("A40-8Q"), max_instances=3)
    add_hosts(0, 5)
    client.force_login(tenant_member)
    _offered(10, tenant)
    at_10 = queries(client, "/desktops/new/")
    _offered(90, tenant, start=10)
    at_100 = queries(client, "/desktops/new/")
    assert at_100 == at_10 <= 20
    page = client.get("/desktops/new/").content.decode()
    assert "T099" in page and "No capacity:" in page


def test_batched_offers_say_what_one_request_at_a_time_says(catalog, tenant, tenant_member):
    """The batch answers, template by template, what ``check_quota_first`` and ``decide`` answer alone,
    quota refusals (a per-profile cap) included."""
    tenant.quota.max_desktops = 50
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    ProfileQuota.objects.create(quota=tenant.quota, profile=profile("A40-8Q"), max_instances=0)
    add_hosts(0, 5)
    _offered(9, tenant)
    make_template("Whole A40", gpu_count=1, gpu_models=["A40"], tenants=[tenant], vcpus=2, memory_mib=2048)
    offers = offers_for(tenant)
    quota = tenant.quota
    usage = usage_of(tenant, quota)
    expected = []
    for template in tenant.templates.filter(is_active=True).select_related("profile").order_by("name"):
        try:
            check_quota_first(quota, usage, template)
            decide(template, quota, usage)
        except (QuotaExceeded, NoCapacity) as exc:
            expected.append((template.name, False, exc.message))
        else:
            expected.append((template.name, True, ""))
    assert [(o.template.name, o.available, o.reason) for o in offers] == expected
    kinds = {o.template.name: o.kind for o in offers}
    assert kinds["T000"] == "quota" and kinds["T001"] == "capacity" and kinds["Whole A40"] == ""
