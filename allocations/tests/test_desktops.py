"""Desktops end to end on the test-driver lab: request, provision, run, extend, release, expire,
every transition audited, quota edges, driver faults and redelivery."""

from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.utils import timezone

from allocations import tasks
from allocations.choices import TRANSITIONS, DesktopStatus
from allocations.exceptions import InvalidTransition, NoCapacity, NotAllowed, QuotaExceeded
from allocations.models import Desktop
from allocations.services import hosting, lifecycle
from allocations.services.request import request_desktop
from allocations.tests.factories import make_membership, make_template, make_user
from audit.models import AuditEvent
from core.errors import NotFound
from inventory.drivers.base import DriverError
from inventory.models import GPU, Host, VGPUProfile
from inventory.services.connect import driver_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def a40_template(catalog, tenant):
    tenant.quota.max_desktops = 4
    tenant.quota.max_framebuffer_mib = 4 * 24576
    tenant.quota.save()
    return make_template(
        "CAD", profile=VGPUProfile.objects.get(name="A40-24Q"), tenants=[tenant], vcpus=8, memory_mib=16384
    )


def ask(user, template, hours=2, **kw):
    return request_desktop(actor=user, template_id=template.pk, duration_hours=hours, **kw)


def verbs(desktop):
    return list(
        AuditEvent.objects.filter(object_type="allocations.desktop", object_id=str(desktop.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )


def test_request_provision_run_release_through_libvirt(lab, tenant_member, a40_template, run_tasks):
    host = lab("lab-a40=A40x2")
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING
    assert desktop.started_at and desktop.expires_at - desktop.started_at == timedelta(hours=2)
    driver = driver_for(host)
    domain = driver.domain_info(desktop.domain_name)
    assert domain.state == "running" and domain.mdev_uuids == (str(desktop.mdev_uuid),)
    assert domain.metadata["desktop"] == str(desktop.pk)
    (mdev,) = driver.list_mdevs()
    assert mdev.domain == desktop.domain_name
    gpu = desktop.gpus.get()
    assert (gpu.current_profile.name, gpu.instances_used) == ("A40-24Q", 1)
    assert Host.objects.get(pk=host.pk).vcpus_used == 8

    with run_tasks():
        lifecycle.release_desktop(desktop, actor=tenant_member)
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RELEASED and desktop.holds_capacity is False and desktop.ended_at
    assert driver.list_domains() == [] and driver.list_mdevs() == []
    gpu.refresh_from_db()
    assert (gpu.current_profile, gpu.instances_used) == (None, 0)  # an empty board takes any type again
    assert Host.objects.get(pk=host.pk).vcpus_used == 0
    assert verbs(desktop) == [
        "desktop.requested",
        "desktop.provisioning",
        "desktop.running",
        "desktop.stopping",
        "desktop.released",
    ]


def test_every_transition_outside_the_table_is_refused(lab, tenant_member, a40_template):
    lab()
    desktop = ask(tenant_member, a40_template)
    statuses = [s for s in DesktopStatus]
    for source in statuses:
        for target in statuses:
            Desktop.objects.filter(pk=desktop.pk).update(status=source, holds_capacity=False)
            if target in TRANSITIONS[source]:
                lifecycle.transition(desktop.pk, target)
                assert Desktop.objects.get(pk=desktop.pk).status == target
            else:
                with pytest.raises(InvalidTransition):
                    lifecycle.transition(desktop.pk, target)


def test_capacity_is_returned_exactly_once(lab, tenant_member, a40_template):
    host = lab()
    desktop = ask(tenant_member, a40_template)
    lifecycle.transition(desktop.pk, DesktopStatus.FAILED, reason="test")
    assert lifecycle.free_capacity(Desktop.objects.get(pk=desktop.pk)) is False
    gpu = GPU.objects.get(pk=desktop.gpus.get().pk)
    assert gpu.instances_used == 0 and Host.objects.get(pk=host.pk).vcpus_used == 0


def test_quota_counts_desktops_in_flight(lab, tenant, tenant_member, a40_template):
    lab()
    tenant.quota.max_desktops = 2
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    ask(tenant_member, a40_template)
    ask(tenant_member, a40_template)  # both still REQUESTED: no worker ran
    with pytest.raises(QuotaExceeded) as caught:
        ask(tenant_member, a40_template)
    assert caught.value.details == {"resource": "desktops", "used": 2, "allowed": 2, "requested": 1}
    assert "2 of 2 desktops" in caught.value.message


def test_framebuffer_and_per_profile_limits(lab, tenant, tenant_member, a40_template):
    from allocations.models import ProfileQuota

    lab()
    tenant.quota.max_desktops = 10
    tenant.quota.max_framebuffer_mib = 24576 * 2
    tenant.quota.save()
    ask(tenant_member, a40_template)
    ProfileQuota.objects.create(quota=tenant.quota, profile=a40_template.profile, max_instances=1)
    with pytest.raises(QuotaExceeded, match="1 of 1 A40-24Q desktops"):
        ask(tenant_member, a40_template)
    ProfileQuota.objects.all().delete()
    ask(tenant_member, a40_template)  # exactly at the framebuffer limit: allowed
    with pytest.raises(QuotaExceeded) as caught:
        ask(tenant_member, a40_template)
    assert caught.value.details["resource"] == "framebuffer_mib"
    assert caught.value.details["used"] == caught.value.details["allowed"] == 49152


def test_duration_beyond_the_tenant_maximum_is_refused(lab, tenant, tenant_member, a40_template):
    lab()
    with pytest.raises(QuotaExceeded, match="at most 8 hours; you asked for 9"):
        ask(tenant_member, a40_template, hours=9)
    assert not Desktop.objects.exists()


def test_template_not_offered_and_users_without_tenant(lab, outsider, platform_admin, a40_template):
    lab()
    with pytest.raises(NotFound):
        ask(outsider, a40_template)
    with pytest.raises(NotAllowed):
        ask(platform_admin, a40_template)


def test_an_inactive_tenant_or_one_without_a_quota_gets_nothing(lab, tenant, tenant_member, a40_template):
    from allocations.models import Quota

    lab()
    tenant.is_active = False
    tenant.save()
    with pytest.raises(NotAllowed, match=f"{tenant.name} is inactive"):
        ask(tenant_member, a40_template)
    tenant.is_active = True
    tenant.save()
    Quota.objects.filter(tenant=tenant).delete()  # not possible through the portal; by hand in the database
    with pytest.raises(NotAllowed, match=f"{tenant.name} has no quota yet"):
        ask(tenant_member, a40_template)
    assert not Desktop.objects.exists()


def test_no_capacity_names_the_short_resource(lab, tenant, tenant_member, a40_template, catalog):
    host = lab("lab-a40=A40x1")
    tenant.quota.max_desktops = 10
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    ask(tenant_member, a40_template)
    ask(tenant_member, a40_template)
    with pytest.raises(NoCapacity) as full:
        ask(tenant_member, a40_template)
    assert full.value.details == {"resource": "gpu_instances"}
    assert "every A40 GPU is full or runs another profile" in full.value.message
    other = make_template(
        "Small", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant], vcpus=4, memory_mib=4096
    )
    with pytest.raises(NoCapacity, match="full or runs another profile"):
        ask(tenant_member, other)  # equal-size mode: the busy board runs A40-24Q
    Host.objects.filter(pk=host.pk).update(state="maintenance")
    with pytest.raises(NoCapacity, match="No online host has an A40 GPU"):
        ask(tenant_member, other)
    a16 = make_template(
        "Office", profile=VGPUProfile.objects.get(name="A16-2B"), tenants=[tenant], vcpus=2, memory_mib=2048
    )
    lab("lab-a16=A16x1")
    Host.objects.filter(name="lab-a16").update(cpu_cores=1)
    with pytest.raises(NoCapacity) as cpu:
        ask(tenant_member, a16)
    assert cpu.value.details == {"resource": "host_cpu_memory"}


def test_passthrough_takes_whole_free_gpus_of_one_host(lab, tenant, tenant_member, run_tasks):
    host = lab("lab-l40s=L40Sx2:passthrough")
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    template = make_template("Two L40S", tenants=[tenant], gpu_count=2, gpu_models=["L40S"], vcpus=16, memory_mib=65536)
    with run_tasks():
        desktop = ask(tenant_member, template)
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING and desktop.framebuffer_mib == 2 * 49152
    domain = driver_for(host).domain_info(desktop.domain_name)
    assert sorted(domain.passthrough_pci) == ["0000:41:00.0", "0000:61:00.0"]
    with pytest.raises(NoCapacity, match="2 free whole GPU"):
        ask(tenant_member, template)


def test_extend_within_the_limit_and_reboot(lab, tenant_member, a40_template, run_tasks):
    lab()
    with run_tasks():
        desktop = ask(tenant_member, a40_template, hours=6)
    desktop.refresh_from_db()
    expires = desktop.expires_at
    desktop = lifecycle.extend_desktop(desktop, 2, actor=tenant_member)
    assert desktop.expires_at == expires + timedelta(hours=2) and desktop.duration_hours == 8
    with pytest.raises(QuotaExceeded, match="at most 8 hours"):
        lifecycle.extend_desktop(desktop, 1, actor=tenant_member)
    with run_tasks():
        lifecycle.reboot_desktop(desktop, actor=tenant_member)
    assert "desktop.reboot_requested" in verbs(desktop) and "desktop.extended" in verbs(desktop)


def test_expiry_warns_then_releases(lab, tenant_member, a40_template, run_tasks, settings):
    host = lab()
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    Desktop.objects.filter(pk=desktop.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    assert tasks.expire_due.apply().get() == {"warned": 1, "expired": 0}
    assert tasks.expire_due.apply().get() == {"warned": 0, "expired": 0}  # warned once
    Desktop.objects.filter(pk=desktop.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with run_tasks():
        assert tasks.expire_due.apply().get() == {"warned": 0, "expired": 1}
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.EXPIRED and desktop.end_reason == "expired"
    assert driver_for(host).list_domains() == []
    assert verbs(desktop)[-3:] == ["desktop.expiry_warning", "desktop.stopping", "desktop.expired"]


@contextmanager
def no_propagation():
    """Celery's eager mode replays retries inline only when it does not re-raise them to the caller."""
    from portal.celery import app

    app.conf.task_eager_propagates = False
    try:
        yield
    finally:
        app.conf.task_eager_propagates = True


def _flaky(monkeypatch, target, errors):
    """Make ``target`` (module, name) raise the given DriverErrors first, then work."""
    module, name = target
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_transient_driver_errors_are_retried_then_succeed(lab, tenant_member, a40_template, run_tasks, monkeypatch):
    from allocations.services import hosting

    lab()
    monkeypatch.setattr(tasks, "_backoff", lambda retries: 0)
    calls = _flaky(
        monkeypatch,
        (hosting, "build_desktop"),
        [
            DriverError("cannot connect", retryable=True, detail="Connection refused"),
            DriverError("cannot connect", retryable=True, detail="timed out"),
        ],
    )
    with no_propagation(), run_tasks():
        ask(tenant_member, a40_template)
    desktop = Desktop.objects.get()
    assert desktop.status == DesktopStatus.RUNNING and calls["n"] == 3


def test_permanent_driver_error_undoes_and_frees(lab, tenant_member, a40_template, run_tasks, monkeypatch):
    from inventory.drivers.libvirt import LibvirtDriver

    host = lab()
    _flaky(
        monkeypatch,
        (LibvirtDriver, "start_domain"),
        [
            DriverError("cannot start domain", retryable=False, detail="unsupported configuration"),
        ],
    )
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.FAILED and desktop.holds_capacity is False
    assert desktop.status_reason == "The desktop could not be started on its host."  # libvirt's text: for admins
    failed = AuditEvent.objects.about(desktop).get(verb="desktop.failed")
    assert failed.after["detail"] == "could not be built on lab-a40: cannot start domain: unsupported configuration"
    driver = driver_for(host)
    assert driver.list_domains() == [] and driver.list_mdevs() == []  # what was built is undone
    assert GPU.objects.filter(host=host, instances_used__gt=0).count() == 0


def test_transient_errors_past_the_retry_budget_fail_cleanly(lab, tenant_member, a40_template, run_tasks, monkeypatch):
    from allocations.services import hosting

    lab()
    monkeypatch.setattr(tasks, "_backoff", lambda retries: 0)
    errors = [DriverError("cannot connect", retryable=True, detail="refused") for _ in range(10)]
    calls = _flaky(monkeypatch, (hosting, "build_desktop"), errors)
    with no_propagation(), run_tasks():
        ask(tenant_member, a40_template)
    desktop = Desktop.objects.get()
    assert desktop.status == DesktopStatus.FAILED and calls["n"] == tasks.MAX_RETRIES + 1


def test_time_limit_becomes_failed_with_a_readable_reason(lab, tenant_member, a40_template, run_tasks, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from allocations.services import hosting

    lab()
    monkeypatch.setattr(hosting, "build_desktop", lambda d: (_ for _ in ()).throw(SoftTimeLimitExceeded()))
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.FAILED and "took longer than" in desktop.status_reason


@pytest.mark.parametrize("task_name", ["provision", "teardown", "reboot"])
def test_redelivered_tasks_do_nothing_twice(lab, tenant_member, a40_template, run_tasks, task_name):
    host = lab()
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    if task_name == "teardown":
        with run_tasks():
            lifecycle.release_desktop(desktop, actor=tenant_member)
    events = AuditEvent.objects.count()
    driver = driver_for(host)
    before = (driver.list_domains(), driver.list_mdevs())
    task = getattr(tasks, task_name)
    if task_name == "reboot":
        task.apply(args=[desktop.pk]).get()
        Desktop.objects.filter(pk=desktop.pk).update(status=DesktopStatus.RELEASED, holds_capacity=False)
        assert task.apply(args=[desktop.pk]).get() is None
        return
    assert task.apply(args=[desktop.pk]).get() is None  # second delivery: status says it is done
    assert AuditEvent.objects.count() == events
    assert (driver.list_domains(), driver.list_mdevs()) == before


def test_provision_redelivered_mid_way_finishes_the_job(lab, tenant_member, a40_template, run_tasks):
    """A worker died after creating the mdev and defining the domain: the redelivery reuses them."""
    from allocations.services import hosting

    host = lab()
    desktop = ask(tenant_member, a40_template)
    lifecycle.transition(desktop.pk, DesktopStatus.PROVISIONING)
    desktop = Desktop.objects.get(pk=desktop.pk)
    driver = driver_for(host)
    gpu = desktop.gpus.get()
    driver.create_mdev(gpu.pci_address, gpu.mdev_types.get(profile=desktop.profile).type_id, str(desktop.mdev_uuid))
    driver.define_domain(hosting.domain_spec(desktop))
    assert tasks.provision.apply(args=[desktop.pk]).get() == "running"
    assert len(driver.list_mdevs()) == 1 and len(driver.list_domains()) == 1


def test_the_domain_is_named_when_the_build_starts(lab, tenant_member, a40_template, run_tasks):
    host = lab()
    built, never_built = ask(tenant_member, a40_template), ask(tenant_member, a40_template)
    assert built.domain_name == never_built.domain_name == ""  # requested: nothing exists on the host yet
    lifecycle.transition(built.pk, DesktopStatus.PROVISIONING)
    assert Desktop.objects.get(pk=built.pk).domain_name == f"desktop-{built.pk}"
    lifecycle.release_desktop(never_built, actor=tenant_member)
    assert tasks.teardown.apply(args=[never_built.pk]).get() == DesktopStatus.RELEASED  # no domain to remove
    assert Desktop.objects.get(pk=never_built.pk).domain_name == ""
    assert driver_for(host).list_domains() == []


def test_release_while_provisioning_is_cleaned_by_teardown(lab, tenant_member, a40_template, run_tasks):
    host = lab()
    desktop = ask(tenant_member, a40_template)
    lifecycle.transition(desktop.pk, DesktopStatus.PROVISIONING)
    lifecycle.transition(desktop.pk, DesktopStatus.STOPPING, end_reason="released")
    assert tasks.provision.apply(args=[desktop.pk]).get() is None
    assert tasks.teardown.apply(args=[desktop.pk]).get() == DesktopStatus.RELEASED
    assert driver_for(host).list_domains() == []


def test_stuck_desktops_are_swept(lab, tenant_member, a40_template, run_tasks, settings):
    lab()
    stuck = ask(tenant_member, a40_template)
    lifecycle.transition(stuck.pk, DesktopStatus.PROVISIONING)
    Desktop.objects.filter(pk=stuck.pk).update(status_changed_at=timezone.now() - timedelta(hours=1))
    with run_tasks():
        assert tasks.sweep_stuck.apply().get() == {"requeued": 0, "abandoned": 1, "host_lost": 0}
    stuck.refresh_from_db()
    assert stuck.status == DesktopStatus.FAILED and "did not finish within" in stuck.status_reason


def test_release_twice_is_a_clear_conflict(lab, tenant_member, a40_template):
    lab()
    desktop = ask(tenant_member, a40_template)
    lifecycle.release_desktop(desktop, actor=tenant_member)
    with pytest.raises(InvalidTransition, match="already being released"):
        lifecycle.release_desktop(Desktop.objects.get(pk=desktop.pk), actor=tenant_member)


def test_member_of_two_tenants_must_choose(lab, tenant, other_tenant, a40_template):
    from core.errors import PortalError

    lab()
    user = make_user("both")
    make_membership(user, "tenant-member", tenant)
    make_membership(user, "tenant-member", other_tenant)
    with pytest.raises(PortalError, match="several tenants"):
        ask(user, a40_template)
    assert ask(user, a40_template, tenant_id=tenant.pk).tenant == tenant


def test_desktops_stuck_on_an_offline_host_fail_and_free_their_capacity(lab, tenant_member, a40_template):
    host = lab()
    desktop = ask(tenant_member, a40_template)  # no worker picks it up: the host went silent
    Host.objects.filter(pk=host.pk).update(state="offline")
    Desktop.objects.filter(pk=desktop.pk).update(status_changed_at=timezone.now() - timedelta(hours=1))
    assert tasks.sweep_stuck.apply().get() == {"requeued": 0, "abandoned": 0, "host_lost": 1}
    desktop.refresh_from_db()
    assert (desktop.status, desktop.end_reason, desktop.holds_capacity) == ("failed", "host-lost", False)
    assert "lab-a40 is offline" in desktop.status_reason
    assert GPU.objects.filter(host=host, instances_used__gt=0).count() == 0


def test_a_requested_desktop_is_requeued_once_per_lease_span(
    lab, tenant_member, a40_template, monkeypatch, django_capture_on_commit_callbacks, settings
):
    """An order no worker took (its message lost with a Redis restart) is queued again after a lease's
    span, once per span; not before."""
    lab()
    desktop = ask(tenant_member, a40_template)
    sent = []
    monkeypatch.setattr(tasks.provision, "apply_async", lambda args, queue, **kw: sent.append((args, queue)))
    assert tasks.sweep_stuck.apply().get()["requeued"] == 0  # just asked: its own message is on its way
    Desktop.objects.filter(pk=desktop.pk).update(
        status_changed_at=timezone.now() - timedelta(seconds=settings.PORTAL_TASK_LEASE_S + 1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_stuck.apply().get()["requeued"] == 1
        assert tasks.sweep_stuck.apply().get()["requeued"] == 0
    assert sent == [([desktop.pk], "host.lab-a40")]


def _guest_wait(monkeypatch, effect):
    """Replace the driver's guest-readiness wait with ``effect(name, timeout_s)``, recording the
    desktop's status and reason the moment the task waits."""
    from inventory.drivers.libvirt import LibvirtDriver

    seen = []

    def wait(driver, name, timeout_s):
        desktop = Desktop.objects.get(domain_name=name)
        seen.append((desktop.status, desktop.status_reason, timeout_s))
        return effect(name, timeout_s)

    monkeypatch.setattr(LibvirtDriver, "wait_guest_ready", wait)
    return seen


def test_a_started_desktop_says_its_guest_is_starting_until_the_guest_is_up(
    lab, tenant_member, a40_template, run_tasks, monkeypatch, settings
):
    settings.PORTAL_GUEST_READY_TIMEOUT_S = 45
    lab()
    seen = _guest_wait(monkeypatch, lambda name, timeout_s: None)
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    assert seen == [(DesktopStatus.PROVISIONING, "the guest is starting", 45)]
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING and desktop.status_reason == ""
    assert verbs(desktop) == ["desktop.requested", "desktop.provisioning", "desktop.running"]  # notes are not audited


def test_a_guest_not_up_in_time_fails_the_desktop_and_undoes_the_build(
    lab, tenant_member, a40_template, run_tasks, monkeypatch
):
    host = lab()

    def silent(name, timeout_s):
        raise DriverError(
            f"the guest of {name} did not come up within {timeout_s} s",
            retryable=False,
            detail="its qemu guest agent does not answer",
        )

    _guest_wait(monkeypatch, silent)
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.FAILED and not desktop.holds_capacity
    assert desktop.status_reason == (
        f"the guest of {desktop.domain_name} did not come up within 120 s: its qemu guest agent does not answer"
    )
    driver = driver_for(host)
    assert driver.list_domains() == [] and driver.list_mdevs() == []
    assert GPU.objects.filter(host=host, instances_used__gt=0).count() == 0


def test_a_desktop_released_while_its_guest_boots_is_left_to_the_teardown(
    lab, tenant_member, a40_template, run_tasks, monkeypatch
):
    host = lab()
    desktop = ask(tenant_member, a40_template)

    def released_meanwhile(name, timeout_s):
        lifecycle.transition(desktop.pk, DesktopStatus.STOPPING, end_reason="released", reason="Released")
        raise DriverError(f"{name} stopped before its guest was ready", retryable=False)

    _guest_wait(monkeypatch, released_meanwhile)
    assert tasks.provision.apply(args=[desktop.pk]).get() is None
    assert Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.STOPPING  # not turned into a failure
    assert tasks.teardown.apply(args=[desktop.pk]).get() == DesktopStatus.RELEASED
    assert driver_for(host).list_domains() == []


def test_a_rebooted_desktop_says_its_guest_is_restarting_until_it_is_up(
    lab, tenant_member, a40_template, run_tasks, monkeypatch
):
    lab()
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    seen = _guest_wait(monkeypatch, lambda name, timeout_s: None)
    assert tasks.reboot.apply(args=[desktop.pk]).get() == "rebooted"
    assert seen == [(DesktopStatus.RUNNING, "the guest is restarting", 120)]
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING and desktop.status_reason == ""

    def silent(name, timeout_s):
        raise DriverError(f"the guest of {name} did not come up within {timeout_s} s", retryable=False)

    _guest_wait(monkeypatch, silent)
    assert tasks.reboot.apply(args=[desktop.pk]).get() == "not ready"
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING  # still holds its host; its owner may reboot or release it
    assert desktop.status_reason == (
        f"the reboot failed: it restarted, but the guest of {desktop.domain_name} did not come up within 120 s"
    )


def test_progress_notes_leave_a_desktop_that_moved_on_alone(lab, tenant_member, a40_template):
    lab()
    desktop = ask(tenant_member, a40_template)
    assert not lifecycle.note_progress(desktop.pk, "the guest is starting", status=DesktopStatus.PROVISIONING)
    assert Desktop.objects.get(pk=desktop.pk).status_reason == desktop.status_reason


def test_a_reboot_is_audited_as_rebooted_once_the_guest_is_up(lab, tenant_member, a40_template, run_tasks, monkeypatch):
    lab()
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    _guest_wait(monkeypatch, lambda name, timeout_s: None)
    with run_tasks():
        lifecycle.reboot_desktop(desktop, actor=tenant_member)
    assert verbs(desktop)[-2:] == ["desktop.reboot_requested", "desktop.rebooted"]
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING and desktop.status_reason == ""


def test_a_failed_reboot_is_audited_with_its_reason_and_the_desktop_says_it(
    lab, tenant_member, a40_template, run_tasks, monkeypatch
):
    from allocations.services import hosting

    lab()
    with run_tasks():
        desktop = ask(tenant_member, a40_template)

    def refuses(d):
        raise DriverError("Requested operation is not valid: domain is not running", retryable=False)

    monkeypatch.setattr(hosting, "reboot_desktop", refuses)
    assert tasks.reboot.apply(args=[desktop.pk]).get() == "failed"
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING
    assert desktop.status_reason == "the reboot failed: the host could not restart it"
    event = AuditEvent.objects.about(desktop).get(verb="desktop.reboot_failed")
    assert event.after["reason"] == desktop.status_reason and event.actor_username == ""
    assert "domain is not running" in event.after["detail"]  # libvirt's words: for admins, not the owner


def test_a_libvirt_failure_shows_the_owner_a_sentence_and_keeps_libvirts_text_for_admins(
    lab, tenant_member, platform_admin, a40_template, run_tasks, monkeypatch, client
):
    from django.urls import reverse

    from inventory.drivers.libvirt import LibvirtDriver

    lab()
    libvirt_says = "unsupported configuration: host doesn't support passthrough of host PCI devices"
    _flaky(
        monkeypatch,
        (LibvirtDriver, "start_domain"),
        [DriverError("cannot start domain desktop-1", retryable=False, detail=libvirt_says)],
    )
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.FAILED
    assert desktop.status_reason == "The desktop could not be started on its host."
    failed = AuditEvent.objects.about(desktop).get(verb="desktop.failed")
    assert failed.after["reason"] == desktop.status_reason and libvirt_says in failed.after["detail"]
    page = reverse("desktop-page", args=[desktop.pk])
    client.force_login(tenant_member)
    owners = client.get(page).content.decode()
    assert "The desktop could not be started on its host." in owners and libvirt_says not in owners
    assert "doesn&#x27;t support passthrough" not in owners
    client.force_login(platform_admin)
    assert "host doesn&#x27;t support passthrough of host PCI devices" in client.get(page).content.decode()


def test_a_failed_teardown_tells_the_owner_in_words_and_keeps_libvirts_text_for_admins(
    lab, tenant_member, a40_template, run_tasks, monkeypatch
):
    """Reproduction: the owner's page showed "teardown failed: <libvirt's error text>"."""
    lab()
    with run_tasks():
        desktop = ask(tenant_member, a40_template)
    lifecycle.release_desktop(desktop, actor=tenant_member)

    def refuses(d):
        raise DriverError("internal error: process exited while connecting to monitor", retryable=False)

    monkeypatch.setattr(hosting, "teardown_desktop", refuses)
    assert tasks.teardown.apply(args=[desktop.pk]).get() == "failed"
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.FAILED
    assert desktop.status_reason == "The host could not remove the desktop; the reconciler will remove what is left."
    event = AuditEvent.objects.about(desktop).get(verb="desktop.failed")
    assert "process exited while connecting to monitor" in event.after["detail"]
