"""Force-draining a host (issue 16, ``services.drain``): every owner of a desktop on it is told at once,
live and on their desktop's page; each desktop stops at the stated time (or its own end, if sooner)
through the expiry machinery, its end saying its host was drained, and its open console closing
with that reason."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from allocations import tasks
from allocations.choices import DesktopStatus, EndReason
from allocations.exceptions import InvalidTransition
from allocations.models import Desktop
from allocations.services import lifecycle
from allocations.services.drain import drain_host
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from allocations.tests.live import frames, live_socket
from audit.models import AuditEvent
from consoles.consumers import ConsoleConsumer
from consoles.models import ConsoleSession
from consoles.services import issue_ticket

# The console tests' real relay and fake guest: the console below is a real one, closed by the drain.
from consoles.tests.conftest import (  # noqa: F401 - fixtures
    RFB_VERSION,
    console_desktop,
    fake_guest,
    relay,
    relay_key,
    running_desktop,
)
from core.errors import PortalError
from inventory.models import Host, VGPUProfile
from portal.celery import app as celery_app

REASON = "BIOS update"


def verbs(desktop):
    return list(AuditEvent.objects.about(desktop).order_by("seq").values_list("verb", flat=True))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_drain_tells_the_owner_live_and_on_their_desktop_page(
    running_desktop,  # noqa: F811 - the console tests' fixture
    tenant_member,
    outsider,
    platform_admin,  # noqa: F811
):
    alice, mallory = await live_socket(tenant_member), await live_socket(outsider)
    stop_at = timezone.now() + timedelta(minutes=30)
    result = await sync_to_async(drain_host)(running_desktop.host, reason=REASON, stop_at=stop_at, actor=platform_admin)
    assert result.notified == [running_desktop.pk] and result.stopped == []

    told = await frames(alice)
    (drain,) = [f["data"] for f in told if f["event"] == "desktop.drain"]
    assert (drain["id"], drain["reason"], drain["stop_at"]) == (running_desktop.pk, REASON, stop_at.isoformat())
    assert {f["data"]["verb"] for f in told if f["event"] == "desktop.status"} == {"desktop.drain_notice"}
    assert await frames(mallory) == []  # another tenant's owner hears nothing of it
    for c in (alice, mallory):
        await c.disconnect()

    def check():
        desktop = Desktop.objects.get(pk=running_desktop.pk)
        assert desktop.expires_at == stop_at and desktop.drain_reason == REASON  # sooner than its 1 h
        host = Host.objects.get(pk=running_desktop.host_id)
        assert (host.state, host.maintenance_reason, host.drain_stop_at) == ("maintenance", REASON, stop_at)
        started = AuditEvent.objects.get(verb="host.drain_started")
        assert started.actor_id == platform_admin.pk and started.after["reason"] == REASON and started.after["stop_at"]
        notice = AuditEvent.objects.about(desktop).get(verb="desktop.drain_notice")
        assert notice.after["reason"] == f"its host is being drained: {REASON}"

    await sync_to_async(check)()

    from django.test import Client

    def page():
        client = Client()
        client.force_login(tenant_member)
        return client.get(f"/desktops/{running_desktop.pk}/").content.decode()

    shown = await sync_to_async(page)()
    assert "Its host is being drained:</strong> BIOS update. This desktop stops at" in shown
    assert "its host is being drained: BIOS update" in shown  # the timeline
    assert "Extend" not in shown.split('id="desktop-summary"')[1].split("</section>")[0]


@pytest.fixture
def eager_tasks():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_drained_desktop_stops_at_the_stated_time_saying_so_and_its_console_closes_with_the_reason(
    console_desktop,  # noqa: F811 - the console tests' fixture
    tenant_member,
    platform_admin,
    eager_tasks,  # noqa: F811
):
    token = (await sync_to_async(issue_ticket)(console_desktop.pk, actor=tenant_member)).token
    console = WebsocketCommunicator(ConsoleConsumer.as_asgi(), f"/ws/console/?ticket={token}")
    console.scope.update(user=tenant_member, client=["203.0.113.7", 50000])
    from types import SimpleNamespace

    console.scope["session"] = SimpleNamespace(session_key=None)
    assert (await console.connect(timeout=5))[0]
    assert await console.receive_from(timeout=3) == RFB_VERSION

    stop_at = timezone.now() + timedelta(minutes=30)
    await sync_to_async(drain_host)(console_desktop.host, reason=REASON, stop_at=stop_at, actor=platform_admin)
    before = await sync_to_async(lifecycle.expire_due_desktops)(now=stop_at - timedelta(minutes=1))
    assert before == {"warned": 1, "expired": 0}  # warned like any desktop about to end, still running
    assert await console.receive_nothing(timeout=0.3)

    after = await sync_to_async(lifecycle.expire_due_desktops)(now=stop_at + timedelta(seconds=1))
    assert after["expired"] == 1
    closed = await console.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": 4000, "reason": "The host was drained: BIOS update."}
    await console.disconnect()
    await asyncio.sleep(0.2)

    def check():
        # (its end status is the teardown's: this fixture's domain is the relay's guest, not the lab's)
        desktop = Desktop.objects.get(pk=console_desktop.pk)
        assert desktop.end_reason == EndReason.DRAINED
        timeline = list(AuditEvent.objects.about(desktop).order_by("seq").values_list("verb", "after"))
        (stopping,) = [after for verb, after in timeline if verb == "desktop.stopping"]
        assert stopping["reason"] == "its host was drained: BIOS update"
        assert stopping["end_reason"] == EndReason.DRAINED
        session = ConsoleSession.objects.get()
        assert (session.close_code, session.close_reason) == (4000, "The host was drained: BIOS update.")

    await sync_to_async(check)()


# --- synchronous checks ------------------------------------------------------------------------------


@pytest.fixture
def cad(catalog, tenant):
    tenant.quota.max_framebuffer_mib = 100000
    tenant.quota.max_desktops = 5
    tenant.quota.save()
    return make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])


def ask(user, template, hours=4, **kw):
    return request_desktop(actor=user, template_id=template.pk, duration_hours=hours, **kw)


@pytest.mark.django_db
def test_the_expiry_sweep_stops_a_drained_desktop_at_the_stop_time_as_drained(
    lab, tenant_member, platform_admin, cad, run_tasks
):
    host = lab("lab-a40=A40x1")
    with run_tasks():
        desktop = ask(tenant_member, cad)
    stop_at = timezone.now() + timedelta(minutes=30)
    drain_host(host, reason=REASON, stop_at=stop_at, actor=platform_admin)
    with run_tasks():
        assert lifecycle.expire_due_desktops(now=stop_at - timedelta(seconds=1))["expired"] == 0
        assert lifecycle.expire_due_desktops(now=stop_at)["expired"] == 1
    desktop.refresh_from_db()
    assert (desktop.status, desktop.end_reason) == (DesktopStatus.RELEASED, EndReason.DRAINED)
    assert desktop.status_reason == "its host was drained: BIOS update"
    assert verbs(desktop)[-4:] == [
        "desktop.drain_notice",
        "desktop.expiry_warning",
        "desktop.stopping",
        "desktop.released",
    ]
    released = AuditEvent.objects.about(desktop).get(verb="desktop.released")
    assert released.after["reason"] == "its host was drained: BIOS update"


@pytest.mark.django_db
def test_end_now_stops_every_desktop_at_once_saying_why(lab, tenant_member, platform_admin, cad, run_tasks):
    host = lab("lab-a40=A40x1")
    with run_tasks():
        desktop = ask(tenant_member, cad)
        result = drain_host(host, reason=REASON, stop_at=timezone.now(), actor=platform_admin)
    assert result.stopped == [desktop.pk]
    desktop.refresh_from_db()
    assert (desktop.status, desktop.end_reason) == (DesktopStatus.RELEASED, EndReason.DRAINED)
    assert verbs(desktop)[-3:] == ["desktop.drain_notice", "desktop.stopping", "desktop.released"]
    assert lifecycle.console_close_reason(desktop) == "The host was drained: BIOS update."


@pytest.mark.django_db
def test_a_desktop_still_being_built_gets_the_stop_time_when_it_starts(lab, tenant_member, platform_admin, cad):
    host = lab("lab-a40=A40x1")
    desktop = ask(tenant_member, cad, queue_provisioning=False)
    stop_at = timezone.now() + timedelta(minutes=10)
    assert drain_host(host, reason=REASON, stop_at=stop_at, actor=platform_admin).notified == [desktop.pk]
    tasks.provision.apply(args=[desktop.pk]).get()
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING and desktop.expires_at == stop_at  # not 4 h after its start


@pytest.mark.django_db
def test_a_drained_desktop_cannot_be_extended_past_the_stop(lab, tenant_member, platform_admin, cad, run_tasks):
    host = lab("lab-a40=A40x1")
    with run_tasks():
        desktop = ask(tenant_member, cad, hours=1)
    drain_host(host, reason=REASON, stop_at=timezone.now() + timedelta(hours=3), actor=platform_admin)
    desktop.refresh_from_db()
    assert desktop.expires_at < timezone.now() + timedelta(hours=2)  # its own end came first: kept
    with pytest.raises(InvalidTransition, match="Its host is being drained"):
        lifecycle.extend_desktop(desktop, 1, actor=tenant_member)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "reason,minutes,words",
    [("", 30, "Say why the host is drained"), (REASON, -10, "The stop time is in the past")],
)
def test_a_drain_without_reason_or_in_the_past_is_refused_and_changes_nothing(
    lab, platform_admin, reason, minutes, words
):
    host = lab("lab-a40=A40x1")
    with pytest.raises(PortalError, match=words):
        drain_host(host, reason=reason, stop_at=timezone.now() + timedelta(minutes=minutes), actor=platform_admin)
    assert Host.objects.get(pk=host.pk).state == "online"
    assert not AuditEvent.objects.filter(verb="host.drain_started").exists()


@pytest.mark.django_db
def test_the_drain_page_and_api(client, api, lab, tenant_member, auditor, platform_admin, cad, run_tasks):
    host = lab("lab-a40=A40x1")
    with run_tasks():
        desktop = ask(tenant_member, cad)
    client.force_login(platform_admin)
    page = client.get(f"/inventory/hosts/{host.name}/drain/").content.decode()
    assert desktop.name in page and "End now" in page
    response = client.post(f"/inventory/hosts/{host.name}/drain/", {"reason": "", "minutes": 30})
    assert response.status_code == 400 and "This field is required." in response.content.decode()
    response = client.post(f"/inventory/hosts/{host.name}/drain/", {"reason": REASON, "minutes": 45}, follow=True)
    assert "lab-a40 is draining: 1 desktop owner told." in response.content.decode()
    desktop.refresh_from_db()
    assert timedelta(minutes=44) < desktop.expires_at - timezone.now() <= timedelta(minutes=45)

    url = f"/api/hosts/{host.pk}/drain/"
    for other in (auditor, tenant_member):
        assert api.as_user(other).post(url, {"reason": "x", "stop_at": "now"}, format="json").status_code == 403
    bad = api.as_user(platform_admin).post(url, {"reason": "x", "stop_at": "soon"}, format="json")
    assert bad.status_code == 400 and "stop_at" in bad.json()["error"]["fields"]
    past = api.as_user(platform_admin).post(url, {"reason": "x", "stop_at": "2020-01-01T00:00Z"}, format="json")
    assert past.status_code == 400 and "in the past" in past.json()["error"]["message"]
    with run_tasks():
        done = api.as_user(platform_admin).post(url, {"reason": "fans", "stop_at": "now"}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["stopped"] == [desktop.pk] and done.json()["host"]["maintenance_reason"] == "fans"
    desktop.refresh_from_db()
    assert desktop.end_reason == EndReason.DRAINED and desktop.status_reason == "its host was drained: fans"
