"""The self-service and admin pages: each calls the same services as the API."""

import re

import pytest

from allocations.choices import DesktopStatus
from allocations.models import Desktop, QuotaRequest
from allocations.tests.factories import make_template
from inventory.models import Host, VGPUProfile
from inventory.services.utilization import sample_host

pytestmark = pytest.mark.django_db


@pytest.fixture
def offered(catalog, tenant):
    tenant.quota.max_framebuffer_mib = 100000
    tenant.quota.save()
    small = make_template(
        "Office", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant], vcpus=2, memory_mib=4096
    )
    whole = make_template("Whole L40S", tenants=[tenant], gpu_models=["L40S"], vcpus=8, memory_mib=8192)
    return small, whole


def test_new_desktop_page_says_what_is_available_and_why_not(client, lab, tenant, tenant_member, offered):
    lab("lab-a40=A40x1")
    client.force_login(tenant_member)
    page = client.get("/desktops/new/").content.decode()
    assert "Available now" in page
    assert "No capacity: No online host has 1 free whole GPU(s) (L40S) for passthrough." in page
    tenant.quota.max_desktops = 0
    tenant.quota.save()
    page = client.get("/desktops/new/").content.decode()
    assert "Over quota: Your tenant already has 0 of 0 desktops" in page


def test_requesting_through_the_form_runs_the_desktop(client, lab, tenant_member, offered, run_tasks):
    lab("lab-a40=A40x1")
    client.force_login(tenant_member)
    with run_tasks():
        response = client.post("/desktops/new/", {"template": offered[0].pk, "duration_hours": 2, "name": "Mine"})
    desktop = Desktop.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/desktops/{desktop.pk}/"
    detail = client.get(response["Location"]).content.decode()
    assert "Mine" in detail and "Running" in detail and "desktop.running" in detail  # timeline
    assert 'id="vgpu-chart"' in detail and "Release" in detail
    home = client.get("/").content.decode()
    assert f'data-desktop-id="{desktop.pk}"' in home


def test_over_quota_form_shows_the_reason_and_keeps_the_input(client, lab, tenant, tenant_member, offered):
    lab("lab-a40=A40x1")
    tenant.quota.max_desktops = 0
    tenant.quota.save()
    client.force_login(tenant_member)
    response = client.post(
        "/desktops/new/", {"template": offered[0].pk, "duration_hours": 3, "name": "Keep me"}, follow=True
    )
    page = response.content.decode()
    assert "0 of 0 desktops allowed" in page and 'value="Keep me"' in page
    assert not Desktop.objects.exists()


def test_actions_extend_reboot_release(client, lab, tenant_member, outsider, offered, run_tasks):
    lab("lab-a40=A40x1")
    client.force_login(tenant_member)
    with run_tasks():
        client.post("/desktops/new/", {"template": offered[0].pk, "duration_hours": 2})
    desktop = Desktop.objects.get()
    with run_tasks():
        page = client.post(f"/desktops/{desktop.pk}/extend/", {"hours": 1}, follow=True).content.decode()
    assert "extended by 1 h" in page
    with run_tasks():
        page = client.post(f"/desktops/{desktop.pk}/reboot/", follow=True).content.decode()
    assert "is rebooting" in page
    other = type(client)()
    other.force_login(outsider)
    assert other.post(f"/desktops/{desktop.pk}/release/").status_code == 404
    assert other.get(f"/desktops/{desktop.pk}/").status_code == 404
    with run_tasks():
        client.post(f"/desktops/{desktop.pk}/release/")
    assert Desktop.objects.get().status == DesktopStatus.RELEASED
    page = client.post(f"/desktops/{desktop.pk}/release/", follow=True).content.decode()
    assert "cannot become stopping" in page


def test_quota_request_round_trip_in_the_browser_pages(client, tenant, tenant_member, platform_admin):
    client.force_login(tenant_member)
    client.post("/quota-requests/new/", {"max_desktops": 6, "reason": "Workshop", "tenant": tenant.pk})
    request = QuotaRequest.objects.get()
    admin = type(client)()
    admin.force_login(platform_admin)
    queue = admin.get("/quota-requests/").content.decode()
    assert "Workshop" in queue and "Approve" in queue
    page = admin.post(f"/quota-requests/{request.pk}/reject/", {"reason": ""}, follow=True).content.decode()
    assert "Give the requester a reason" in page
    page = admin.post(f"/quota-requests/{request.pk}/approve/", {"reason": "enjoy"}, follow=True).content.decode()
    assert "quota was raised" in page
    tenant.quota.refresh_from_db()
    assert tenant.quota.max_desktops == 6
    assert "Approved" in client.get("/").content.decode()


def test_admin_drains_a_host_and_sees_its_desktops(client, lab, platform_admin, tenant_member, offered, run_tasks):
    host = lab("lab-a40=A40x1")
    member = type(client)()
    member.force_login(tenant_member)
    with run_tasks():
        member.post("/desktops/new/", {"template": offered[0].pk, "duration_hours": 2})
    client.force_login(platform_admin)
    sample_host(host)
    page = client.get(f"/inventory/hosts/{host.name}/").content.decode()
    assert "Start maintenance" in page and "Force-drain" in page and 'id="host-chart"' in page
    fragment = client.get(f"/hosts/{host.name}/desktops/").content.decode()
    assert "alice" in fragment and "Running" in fragment
    client.post(f"/inventory/hosts/{host.name}/state/maintenance/", {"reason": "firmware"})
    assert Host.objects.get(pk=host.pk).state == "maintenance"
    assert member.post(f"/inventory/hosts/{host.name}/state/online/").status_code == 403


def test_operator_pages_list_tenants_templates_and_gpu_tiles(client, lab, auditor, offered):
    lab("lab-a40=A40x2")
    client.force_login(auditor)
    assert "Acme Research" in client.get("/tenants/").content.decode()
    templates = client.get("/templates/").content.decode()
    assert "Office" in templates and "Whole L40S" in templates
    overview = client.get("/inventory/").content.decode()
    assert overview.count('data-gpu-id="') == 2 and "0 instances" in overview
    assert client.post("/inventory/hosts/lab-a40/state/maintenance/").status_code == 403  # auditors read only


def test_a_passthrough_template_over_the_framebuffer_quota_is_not_offered(client, lab, tenant, tenant_member, offered):
    lab("lab-l40s=L40Sx1:passthrough")
    tenant.quota.max_framebuffer_mib = 16384  # a whole L40S charges 48 GiB
    tenant.quota.save()
    client.force_login(tenant_member)
    page = client.get("/desktops/new/").content.decode()
    assert "Over quota: This desktop needs 48.0 GiB of GPU framebuffer" in page


def _as_compared(html: str) -> str:
    """Without what differs between two renders a moment apart: the CSRF token's mask, and the time
    left (``timeuntil``), which may cross a minute between them."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', 'name="csrfmiddlewaretoken"', html)
    return re.sub(r"\d[^<>()]*? left", "… left", html)


def test_each_live_part_of_a_desktop_renders_as_its_page_shows_it(client, lab, tenant_member, offered, run_tasks):
    lab("lab-a40=A40x1")
    client.force_login(tenant_member)
    with run_tasks():
        client.post("/desktops/new/", {"template": offered[0].pk, "duration_hours": 2, "name": "Mine"})
    desktop = Desktop.objects.get()
    page = _as_compared(client.get(f"/desktops/{desktop.pk}/").content.decode())
    home = _as_compared(client.get("/").content.decode())
    parts = {}
    for name, shown_on in [("head", page), ("summary", page), ("timeline", page), ("row", home)]:
        response = client.get(f"/desktops/{desktop.pk}/parts/{name}/")
        assert response.status_code == 200, name
        parts[name] = _as_compared(response.content.decode()).strip()
        assert parts[name] in shown_on, name
        assert f'data-live-part="/desktops/{desktop.pk}/parts/{name}/"' in parts[name]
    assert "Mine" in parts["head"] and "Running" in parts["head"]
    assert "Console" in parts["summary"] and "UTC (… left)" in parts["summary"] and "Release" in parts["summary"]
    assert "desktop.requested" in parts["timeline"] and "desktop.running" in parts["timeline"]
    assert "A40-8Q" in parts["row"] and "Running" in parts["row"]


def test_a_desktops_parts_are_its_owners_only_and_unknown_parts_are_not_found(
    client, lab, tenant_member, outsider, offered
):
    lab("lab-a40=A40x1")
    client.force_login(tenant_member)
    client.post("/desktops/new/", {"template": offered[0].pk, "duration_hours": 2})
    desktop = Desktop.objects.get()
    assert client.get(f"/desktops/{desktop.pk}/parts/vnc/").status_code == 404
    assert client.get(f"/desktops/{desktop.pk + 1}/parts/row/").status_code == 404
    other = type(client)()
    other.force_login(outsider)
    anonymous = type(client)()
    for name in ("row", "head", "summary", "timeline"):
        assert other.get(f"/desktops/{desktop.pk}/parts/{name}/").status_code == 404
        response = anonymous.get(f"/desktops/{desktop.pk}/parts/{name}/")
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_the_row_of_a_new_desktop_shows_its_gpu(client, lab, tenant_member, offered):
    lab("lab-a40=A40x1")
    client.force_login(tenant_member)
    client.post("/desktops/new/", {"template": offered[0].pk, "duration_hours": 2, "name": "Fresh"})
    desktop = Desktop.objects.get()
    assert desktop.status == DesktopStatus.REQUESTED  # its provisioning was not run
    row = client.get(f"/desktops/{desktop.pk}/parts/row/").content.decode()
    assert row.lstrip().startswith(f'<tr data-desktop-id="{desktop.pk}"')
    assert "Fresh" in row and "Requested" in row and "<td>A40-8Q</td>" in row
    summary = client.get(f"/desktops/{desktop.pk}/parts/summary/").content.decode()
    assert "Cancel" in summary and "Release" not in summary  # the actions follow the status


def _running(client, tenant_member, offered, run_tasks, name="Mine"):
    client.force_login(tenant_member)
    with run_tasks():
        client.post("/desktops/new/", {"template": offered[0].pk, "duration_hours": 2, "name": name})
    return Desktop.objects.get(name=name)


def test_a_rebooting_desktop_shows_rebooting_on_its_page_and_row(client, lab, tenant_member, offered, run_tasks):
    from allocations.services import lifecycle
    from allocations.tasks import GUEST_RESTARTING

    lab("lab-a40=A40x1")
    desktop = _running(client, tenant_member, offered, run_tasks)
    lifecycle.note_progress(desktop.pk, GUEST_RESTARTING, status=DesktopStatus.RUNNING)
    for part in ("head", "row"):
        html = client.get(f"/desktops/{desktop.pk}/parts/{part}/").content.decode()
        assert 'class="status status-rebooting" data-field="status">Rebooting…<' in html, part
    lifecycle.finish_reboot(desktop.pk, failure="it restarted, but its guest was not up within 120 s")
    head = client.get(f"/desktops/{desktop.pk}/parts/head/").content.decode()
    assert ">Running<" in head and "the reboot failed: it restarted, but its guest was not up" in head
    timeline = client.get(f"/desktops/{desktop.pk}/parts/timeline/").content.decode()
    assert "desktop.reboot_failed" in timeline and "the reboot failed" in timeline


@pytest.mark.parametrize("final", [DesktopStatus.RELEASED, DesktopStatus.EXPIRED, DesktopStatus.FAILED])
def test_ended_desktops_show_no_time_left_console_or_extend(client, lab, tenant_member, offered, run_tasks, final):
    from allocations.services import lifecycle

    lab("lab-a40=A40x1")
    desktop = _running(client, tenant_member, offered, run_tasks)
    end = {DesktopStatus.EXPIRED: "expired", DesktopStatus.FAILED: "failed"}.get(final, "released")
    with run_tasks():
        lifecycle.release_desktop(desktop, actor=tenant_member, end_reason=end)
    desktop.refresh_from_db()
    assert desktop.status == final and desktop.expires_at is not None
    row = client.get(f"/desktops/{desktop.pk}/parts/row/").content.decode()
    summary = client.get(f"/desktops/{desktop.pk}/parts/summary/").content.decode()
    home = client.get("/").content.decode()
    for html in (row, summary, home):
        assert not re.search(r"(\d|—)[^<>]* left", html) and "data-expires" not in html
        assert "Open console" not in html and "Extend" not in html
    assert "ended " in row and "<dt>Ended</dt>" in summary


def test_the_home_pages_quota_card_is_a_live_part(client, lab, tenant, tenant_member, outsider, offered, run_tasks):
    lab("lab-a40=A40x1")
    client.force_login(tenant_member)
    url = f"/tenants/{tenant.pk}/parts/usage/"
    card = _as_compared(client.get(url).content.decode()).strip()
    assert card.startswith(f'<section class="card" data-tenant-id="{tenant.pk}" data-live-part="{url}">')
    assert card in _as_compared(client.get("/").content.decode())
    assert "0 of " in card
    _running(client, tenant_member, offered, run_tasks)
    assert "8.0 GiB of 97.7 GiB" in client.get(url).content.decode()  # the quota bars follow the desktops
    other = type(client)()
    other.force_login(outsider)
    assert other.get(url).status_code == 404
    assert type(client)().get(url).status_code == 302


def test_times_are_shown_in_the_persons_zone_with_its_label(client, lab, tenant_member, offered, run_tasks):
    from zoneinfo import ZoneInfo

    from audit.models import AuditEvent

    lab("lab-a40=A40x1")
    desktop = _running(client, tenant_member, offered, run_tasks)
    event = AuditEvent.objects.about(desktop).get(verb="desktop.running")
    paris = event.occurred_at.astimezone(ZoneInfo("Europe/Paris"))
    client.cookies["tz"] = "Europe/Paris"
    timeline = client.get(f"/desktops/{desktop.pk}/parts/timeline/").content.decode()
    assert f"{paris:%Y-%m-%d %H:%M:%S} {paris.tzname()}" in timeline
    page = client.get(f"/desktops/{desktop.pk}/").content.decode()
    assert 'data-tz="Europe/Paris"' in page and f'data-tz-label="{paris.tzname()}"' in page
    expires = desktop.expires_at.astimezone(paris.tzinfo)
    assert f"{expires:%Y-%m-%d %H:%M} {expires.tzname()} (" in page
    client.cookies["tz"] = "../../etc/passwd"  # not a zone of the tz database: UTC
    timeline = client.get(f"/desktops/{desktop.pk}/parts/timeline/").content.decode()
    assert f"{event.occurred_at:%Y-%m-%d %H:%M:%S} UTC" in timeline


# --- input that must not break the pages (issue 14) ---


@pytest.mark.parametrize("value", ["99999999999999999999", str(2**63)])
def test_quota_request_page_with_a_framebuffer_beyond_the_database_is_a_message_not_a_500(
    client, tenant, tenant_member, value
):
    """Reproduction: POST /quota-requests/new/ max_framebuffer_mib=99999999999999999999 (or 2**63) was an
    HTTP 500 (full_clean's ValidationError escaped the view)."""
    client.force_login(tenant_member)
    page = client.post(
        "/quota-requests/new/", {"max_framebuffer_mib": value, "reason": "all of it", "tenant": tenant.pk}
    )
    assert page.status_code == 200
    assert "Ensure this value is less than or equal to 1073741824" in page.content.decode()
    assert not QuotaRequest.objects.exists()


def test_a_validation_error_from_full_clean_is_a_message_on_the_quota_request_page(
    client, tenant, tenant_member, monkeypatch
):
    """Whatever the model refuses on save (full_clean) is said on the page, never a 500."""
    from django.core.exceptions import ValidationError

    from allocations.services import quotas

    def refuse(**kwargs):
        raise ValidationError({"max_desktops": ["Ensure this value is less than or equal to 10000."]})

    monkeypatch.setattr(quotas, "request_quota_increase", refuse)
    client.force_login(tenant_member)
    page = client.post("/quota-requests/new/", {"max_desktops": 6, "reason": "x", "tenant": tenant.pk})
    assert page.status_code == 200
    assert "max_desktops: Ensure this value is less than or equal to 10000." in page.content.decode()


def test_the_decision_page_refuses_a_5000_character_note_in_words(client, tenant, tenant_member, platform_admin):
    """Reproduction: the decision form says max_length=2000 but the view read form.data unvalidated, so a
    5,000-character approval note was stored."""
    from allocations.services import quotas

    pending = quotas.request_quota_increase(actor=tenant_member, tenant=tenant, changes={"max_desktops": 6}, reason="x")
    client.force_login(platform_admin)
    for decision in ("approve", "reject"):
        page = client.post(f"/quota-requests/{pending.pk}/{decision}/", {"reason": "n" * 5000}, follow=True)
        assert "The decision note is 5000 characters long; keep it to 2000." in page.content.decode()
    pending.refresh_from_db()
    tenant.quota.refresh_from_db()
    assert pending.status == "pending" and pending.decision_reason == "" and tenant.quota.max_desktops == 2


def test_posting_another_tenants_id_is_refused_not_replaced_by_your_own(client, tenant, other_tenant, tenant_member):
    """Reproduction: POST /quota-requests/new/ tenant=<another tenant's id> quietly made a request for the
    member's own tenant; the new-desktop page likewise showed their own tenant for another's id."""
    client.force_login(tenant_member)
    asked = client.post("/quota-requests/new/", {"max_desktops": 6, "reason": "x", "tenant": other_tenant.pk})
    assert asked.status_code == 404
    assert client.post("/quota-requests/new/", {"max_desktops": 6, "reason": "x", "tenant": "x1"}).status_code == 404
    assert client.get(f"/desktops/new/?tenant={other_tenant.pk}").status_code == 404
    assert client.get(f"/quota-requests/new/?tenant={other_tenant.pk}").status_code == 404
    assert not QuotaRequest.objects.exists()
    # one's own tenant, named or not, still works
    assert client.get(f"/quota-requests/new/?tenant={tenant.pk}").status_code == 200
    assert client.post("/quota-requests/new/", {"max_desktops": 6, "reason": "x"}).status_code == 302


def test_a_second_pending_request_for_the_same_limit_is_said_on_the_page(client, tenant, tenant_member):
    client.force_login(tenant_member)
    client.post("/quota-requests/new/", {"max_desktops": 6, "reason": "x", "tenant": tenant.pk})
    page = client.post("/quota-requests/new/", {"max_desktops": 7, "reason": "y", "tenant": tenant.pk})
    assert page.status_code == 200 and "already has a pending request" in page.content.decode()
    assert QuotaRequest.objects.count() == 1


def test_long_words_wrap_in_table_cells_and_notes_instead_of_widening_the_page():
    """A 2,000-character note without spaces (the longest the service lets through) must wrap."""
    from pathlib import Path

    from django.conf import settings

    css = (Path(settings.BASE_DIR) / "static" / "css" / "portal.css").read_text()
    rule = re.search(r"^([^{}\n]*)\{\s*overflow-wrap:\s*anywhere;?\s*\}", css, re.MULTILINE)
    assert rule, "no overflow-wrap:anywhere rule"
    selectors = {s.strip() for s in rule.group(1).split(",")}
    assert {"td", ".messages li", ".card p"} <= selectors
