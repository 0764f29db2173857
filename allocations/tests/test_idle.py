"""Idle desktops given back (issue 18, ``services.idle`` and ``services.suspend``) on the test-driver lab,
with time moved by the tests: detection at its exact boundaries (SM threshold, idle limit, grace period,
stale telemetry), console input resetting the clock, warn → suspend (libvirt managed save) → resume,
the release action, and every step audited."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.urls import reverse
from django.utils import timezone

from allocations.choices import DesktopStatus, EndReason, IdleAction
from allocations.exceptions import InvalidTransition
from allocations.models import Desktop
from allocations.services import idle, lifecycle, suspend
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from core import live
from inventory.drivers.telemetry import OK, GPUTelemetry, HostTelemetry, VGPUTelemetry
from inventory.models import GPU, Host, VGPUProfile
from inventory.services.connect import driver_for
from inventory.services.utilization import record_sample

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # when the desktops below started
GRACE = timedelta(seconds=900)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def cad(catalog, tenant):
    tenant.quota.max_desktops = 4
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    return make_template(
        "CAD",
        profile=VGPUProfile.objects.get(name="A40-8Q"),
        tenants=[tenant],
        vcpus=2,
        memory_mib=4096,
        idle_limit_minutes=60,
        idle_sm_threshold_pct=5,
    )


@pytest.fixture
def running(lab, tenant_member, cad, run_tasks, settings):
    """A running CAD desktop on the test-driver lab, started at T0 for 8 hours."""
    settings.PORTAL_IDLE_GRACE_S = int(GRACE.total_seconds())
    settings.PORTAL_IDLE_TELEMETRY_STALE_S = 300
    lab("lab-a40=A40x1")
    with run_tasks():
        desktop = request_desktop(actor=tenant_member, template_id=cad.pk, duration_hours=8)
    Desktop.objects.filter(pk=desktop.pk).update(started_at=T0, expires_at=T0 + timedelta(hours=8))
    desktop = Desktop.objects.select_related("template", "host").get(pk=desktop.pk)
    assert desktop.status == DesktopStatus.RUNNING
    return desktop


def vgpu_minute(desktop: Desktop, at: datetime, sm: float) -> None:
    """One telemetry round of the desktop's host at ``at``: its vGPU at ``sm`` % SM (the board idle)."""
    gpu = desktop.gpus.get()
    vgpu = VGPUTelemetry(str(desktop.mdev_uuid), "A40-8Q", sm, 0.0, 0.0, 0.0, 512)
    board = GPUTelemetry(
        gpu.pci_address, gpu.uuid or "GPU-x", "A40", sm_util=sm, mem_util=0.0, fb_used_mib=512,
        fb_total_mib=49152, temperature_c=40.0, power_w=50.0, encoder_util=0.0, decoder_util=0.0, vgpus=(vgpu,),
    )  # fmt: skip
    record_sample(desktop.host, HostTelemetry("simulated", OK, at.timestamp(), (board,)))


def idle_minutes(desktop: Desktop, upto: float, *, sm: float = 0.0, start: float = 0) -> None:
    for n in range(int(start), int(upto) + 1):
        vgpu_minute(desktop, minutes(n), sm)


def verbs(desktop):
    return list(
        AuditEvent.objects.filter(object_type="allocations.desktop", object_id=str(desktop.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )


def live_events(layer, channel) -> list[dict]:
    """What the in-memory channel layer holds for ``channel``, drained."""

    async def drain():
        out = []
        try:
            while True:
                out.append(await asyncio.wait_for(layer.receive(channel), 0.1))
        except TimeoutError:
            return out

    return async_to_sync(drain)()


def fresh(desktop):
    return Desktop.objects.select_related("template", "host").get(pk=desktop.pk)


# --- detection ------------------------------------------------------------------------------------------
def test_a_desktop_is_idle_exactly_at_its_limit_and_not_a_second_before(running):
    idle_minutes(running, 60)
    assert not idle.assess(running, minutes(60) - timedelta(seconds=1)).is_idle
    state = idle.assess(running, minutes(60))
    assert state.is_idle and state.gpu_idle_minutes == 60 and state.input_idle_minutes == 60
    assert state.act_at == minutes(60) + GRACE


def test_a_minute_at_the_sm_threshold_is_busy_and_just_below_it_is_idle(running):
    idle_minutes(running, 82, sm=4.99)
    assert idle.assess(running, minutes(70)).gpu_idle_since == T0  # below 5 % all along
    vgpu_minute(running, minutes(20.5), 5.0)  # a second reading in minute 20: its average is (4.99 + 5) / 2
    assert idle.assess(running, minutes(70)).gpu_idle_since == T0
    vgpu_minute(running, minutes(21) + timedelta(seconds=30), 5.01)  # minute 21 averages (4.99 + 5.01) / 2 = 5
    state = idle.assess(running, minutes(70))
    assert state.gpu_idle_since == minutes(22)  # busy during minute 21, idle from its end
    assert not state.is_idle  # 48 minutes idle
    assert idle.assess(running, minutes(82)).is_idle


def test_console_input_resets_the_idle_clock_and_is_noted_at_most_once_a_minute(running):
    idle_minutes(running, 100)
    assert idle.note_console_input(running.pk, minutes(30))
    assert not idle.note_console_input(running.pk, minutes(30.5))  # within the minute: no write
    running = fresh(running)
    assert running.last_input_at == minutes(30)
    state = idle.assess(running, minutes(60))
    assert not state.is_idle and state.input_idle_minutes == 30 and state.gpu_idle_minutes == 60
    assert idle.assess(running, minutes(90)).is_idle
    assert idle.note_console_input(running.pk, minutes(31))
    assert not idle.assess(fresh(running), minutes(90)).is_idle


def test_without_recent_telemetry_a_desktop_is_never_idle(running):
    idle_minutes(running, 10)  # the telemetry stops at minute 10
    state = idle.assess(running, minutes(90))
    assert not state.known and not state.is_idle
    assert idle.sweep_idle(now=minutes(90))["warned"] == 0
    idle_minutes(running, 90, start=85)  # back: the newest sample is fresh again
    assert idle.assess(running, minutes(90)).is_idle


def test_a_template_without_an_idle_limit_never_gives_desktops_back(running, cad):
    cad.idle_limit_minutes = None
    cad.save()
    idle_minutes(running, 120)
    assert not idle.assess(fresh(running), minutes(120)).applies
    assert idle.sweep_idle(now=minutes(120)) == {
        "warned": 0,
        "cleared": 0,
        "suspended": 0,
        "released": 0,
        "requeued": 0,
    }


# --- warn, suspend, resume ------------------------------------------------------------------------------
def test_warn_then_suspend_to_disk_then_resume_on_the_test_driver(
    running, tenant_member, run_tasks, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(live.user_group(tenant_member.pk), channel)
    idle_minutes(running, 60 + 15)
    driver = driver_for(running.host)

    with django_capture_on_commit_callbacks(execute=True):
        assert idle.sweep_idle(now=minutes(60))["warned"] == 1
    events = {e["event"]: e for e in live_events(layer, channel)}
    assert "desktop.idle_warning" in events and "desktop.status" in events
    assert "suspended at" in events["desktop.idle_warning"]["text"]
    assert idle.sweep_idle(now=minutes(61))["warned"] == 0  # warned once
    warned = AuditEvent.objects.get(verb="desktop.idle_warned", object_id=str(running.pk))
    assert warned.after["action"] == "suspend" and warned.after["gpu_idle_minutes"] == 60

    assert idle.sweep_idle(now=minutes(60) + GRACE - timedelta(seconds=1))["suspended"] == 0
    with run_tasks():
        assert idle.sweep_idle(now=minutes(60) + GRACE)["suspended"] == 1
    desktop = fresh(running)
    assert desktop.status == DesktopStatus.SUSPENDED and desktop.suspended_at is not None
    assert desktop.status_reason == suspend.SUSPENDED
    assert driver.domain_info(desktop.domain_name).state == "shutoff"
    assert driver.has_managed_save(desktop.domain_name)
    # it keeps its claim: the vGPU instance, the host's vCPUs and the tenant's quota
    assert desktop.holds_capacity and GPU.objects.get(pk=desktop.gpus.get().pk).instances_used == 1
    assert Host.objects.get(pk=desktop.host_id).vcpus_used == 2
    assert idle.sweep_idle(now=minutes(100))["suspended"] == 0  # a suspended desktop is left alone

    with run_tasks():
        suspend.request_resume(desktop, actor=tenant_member)
    desktop = fresh(desktop)
    assert desktop.status == DesktopStatus.RUNNING and desktop.resumed_at and desktop.suspended_at is None
    assert desktop.idle_warned_at is None and desktop.status_reason == ""
    assert driver.domain_info(desktop.domain_name).state == "running"
    assert not driver.has_managed_save(desktop.domain_name)
    assert verbs(desktop)[-4:] == [
        "desktop.idle_warned",
        "desktop.suspended",
        "desktop.resume_requested",
        "desktop.resumed",
    ]
    # its idle clock starts over when it resumed
    assert idle.assess(desktop, desktop.resumed_at + timedelta(minutes=10)).input_idle_minutes == 10


def test_use_after_the_warning_withdraws_it(running):
    idle_minutes(running, 80)
    assert idle.sweep_idle(now=minutes(60))["warned"] == 1
    idle.note_console_input(running.pk, minutes(65))
    assert idle.sweep_idle(now=minutes(66))["cleared"] == 1
    desktop = fresh(running)
    assert desktop.idle_warned_at is None and desktop.status == DesktopStatus.RUNNING
    assert idle.sweep_idle(now=minutes(60) + GRACE)["suspended"] == 0


def test_gpu_work_after_the_warning_withdraws_it(running):
    idle_minutes(running, 80)
    assert idle.sweep_idle(now=minutes(60))["warned"] == 1
    vgpu_minute(running, minutes(62.5), 80.0)
    assert idle.sweep_idle(now=minutes(64))["cleared"] == 1


def test_resume_is_refused_unless_the_desktop_is_suspended_and_saved(running, tenant_member, run_tasks):
    with pytest.raises(InvalidTransition, match="Only a suspended desktop"):
        suspend.request_resume(running, actor=tenant_member)
    idle_minutes(running, 80)
    idle.sweep_idle(now=minutes(60))
    idle.sweep_idle(now=minutes(60) + GRACE)  # no worker ran: its memory is still being saved
    with pytest.raises(InvalidTransition, match="still being suspended"):
        suspend.request_resume(fresh(running), actor=tenant_member)


def test_a_suspended_desktop_expires_and_its_saved_image_is_removed(running, run_tasks):
    idle_minutes(running, 80)
    idle.sweep_idle(now=minutes(60))
    with run_tasks():
        idle.sweep_idle(now=minutes(60) + GRACE)
    driver = driver_for(running.host)
    assert driver.has_managed_save(running.domain_name)
    with run_tasks():
        assert lifecycle.expire_due_desktops(now=T0 + timedelta(hours=8))["expired"] == 1
    desktop = fresh(running)
    assert desktop.status == DesktopStatus.EXPIRED and not desktop.holds_capacity
    assert driver.domain_info(desktop.domain_name) is None


# --- release ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "keeps"), [(IdleAction.RELEASE, True), (IdleAction.SUSPEND, False)], ids=["release", "no-claim"]
)
def test_the_release_action_gives_the_desktop_back_audited_as_reclaimed(running, cad, run_tasks, action, keeps):
    """A template that releases idle desktops, or one whose suspend would give the vGPU back (it could not
    promise to resume where the memory image is), releases them."""
    cad.idle_action, cad.suspend_keeps_capacity = action, keeps
    cad.save()
    idle_minutes(running, 80)
    idle.sweep_idle(now=minutes(60))
    with run_tasks():
        assert idle.sweep_idle(now=minutes(60) + GRACE)["released"] == 1
    desktop = fresh(running)
    assert desktop.status == DesktopStatus.RELEASED and desktop.end_reason == EndReason.IDLE
    assert not desktop.holds_capacity and GPU.objects.get(pk=desktop.gpus.get().pk).instances_used == 0
    assert driver_for(desktop.host).domain_info(desktop.domain_name) is None
    assert verbs(desktop)[-4:] == ["desktop.idle_warned", "desktop.stopping", "desktop.reclaimed", "desktop.released"]
    reclaimed = AuditEvent.objects.get(verb="desktop.reclaimed", object_id=str(desktop.pk))
    assert reclaimed.after["remaining_s"] == int((T0 + timedelta(hours=8) - minutes(60) - GRACE).total_seconds())


# --- pages and API -----------------------------------------------------------------------------------------
def test_the_desktop_page_says_how_close_it_is_and_why(client, running, tenant_member):
    """The example of the issue: "GPU idle for 42 min (SM < 5 %), no console input for 40 min: suspended at
    15:20 unless used", on the page's own clock."""
    base = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=42)
    Desktop.objects.filter(pk=running.pk).update(started_at=base, last_input_at=base + timedelta(minutes=2))
    for n in range(43):
        vgpu_minute(running, base + timedelta(minutes=n), 1.0)
    client.force_login(tenant_member)
    page = client.get(reverse("desktop-page", args=[running.pk])).content.decode()
    assert "GPU idle for 42 min (SM &lt; 5 %), no console input for 40 min: suspended at" in page
    assert "unless used" in page and 'data-field="idle-warning"' not in page
    running.template.idle_limit_minutes = 30
    running.template.save()
    assert idle.sweep_idle()["warned"] == 1
    page = client.get(reverse("desktop-page", args=[running.pk])).content.decode()
    assert 'data-field="idle-warning"' in page and "This desktop is idle" in page


def test_resume_through_the_api_and_the_page(api, client, running, tenant_member, outsider, run_tasks):
    assert api.as_user(tenant_member).post(f"/api/desktops/{running.pk}/resume/").status_code == 409
    idle_minutes(running, 80)
    idle.sweep_idle(now=minutes(60))
    with run_tasks():
        idle.sweep_idle(now=minutes(60) + GRACE)
    assert api.as_user(outsider).post(f"/api/desktops/{running.pk}/resume/").status_code == 404
    body = api.as_user(tenant_member).get(f"/api/desktops/{running.pk}/").json()
    assert body["status"] == "suspended" and body["suspended_at"] and body["idle_warned_at"]
    client.force_login(tenant_member)
    page = client.get(reverse("desktop-page", args=[running.pk])).content.decode()
    assert "Resume" in page and "Suspended" in page
    with run_tasks():
        response = api.as_user(tenant_member).post(f"/api/desktops/{running.pk}/resume/")
    assert response.status_code == 200, response.content
    assert fresh(running).status == DesktopStatus.RUNNING


def test_an_admin_sets_a_templates_idle_rules_on_its_form(client, catalog, platform_admin):
    from allocations.models import DesktopTemplate
    from allocations.tests.test_template_pages import FORM

    client.force_login(platform_admin)
    form = client.get(reverse("template-new")).content.decode()
    assert 'name="idle_limit_minutes"' in form and 'name="suspend_keeps_capacity"' in form
    rules = {"idle_limit_minutes": "45", "idle_sm_threshold_pct": "10", "idle_action": "release"}
    assert client.post(reverse("template-new"), {**FORM, **rules}).status_code == 302
    template = DesktopTemplate.objects.get(name="CAD")
    assert (template.idle_limit_minutes, template.idle_sm_threshold_pct, template.idle_action) == (45, 10, "release")
    page = client.get(reverse("template-page", args=[template.pk])).content.decode()
    assert "after 45 min with the GPU below 10 % SM and no console input: warned, then released" in page
    refused = client.post(reverse("template-edit", args=[template.pk]), {**FORM, "idle_limit_minutes": "2"})
    assert refused.status_code == 200 and DesktopTemplate.objects.get(pk=template.pk).idle_limit_minutes == 45


def test_a_save_the_host_refuses_leaves_the_desktop_running_and_says_why(running, run_tasks, monkeypatch):
    """The failure half of suspend_desktop: a driver error no retry can help puts it back to running,
    audited as desktop.suspend_failed, the reason in words and the driver's own text kept for admins."""
    from allocations.services import hosting
    from inventory.drivers.base import DriverError

    def refuse(desktop):
        raise DriverError("managed save refused", retryable=False, detail="libvirt: operation failed")

    monkeypatch.setattr(hosting, "save_desktop", refuse)
    idle_minutes(running, 60 + 15)
    idle.sweep_idle(now=minutes(60))
    with run_tasks():
        assert idle.sweep_idle(now=minutes(60) + GRACE)["suspended"] == 1

    desktop = fresh(running)
    assert desktop.status == DesktopStatus.RUNNING and desktop.suspended_at is None
    assert desktop.status_reason == "it could not be suspended: the host could not save it"
    failed = AuditEvent.objects.filter(verb="desktop.suspend_failed", object_id=str(running.pk)).get()
    assert failed.after["detail"] == str(
        DriverError("managed save refused", retryable=False, detail="libvirt: operation failed")
    )
