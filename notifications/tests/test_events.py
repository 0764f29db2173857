"""Which changes tell whom, in the portal: each written in the change's own transaction (a rolled-back
change tells nobody), none able to fail the change it tells of."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from allocations.choices import DesktopStatus, EndReason
from allocations.models import Desktop
from allocations.services import lifecycle, quotas
from allocations.services.drain import drain_host
from inventory.choices import HostState
from inventory.models import Host
from inventory.services.hosts import mark_silent_hosts_offline, set_host_state
from notifications import events, fleet
from notifications.models import Notification, NotificationKind

pytestmark = pytest.mark.django_db


def told(user, kind=None):
    rows = Notification.objects.filter(recipient=user)
    return list(rows.filter(kind=kind) if kind else rows)


def test_a_desktop_is_ready_once_it_runs_with_its_guest_up(alice, bob, make_desktop):
    desktop = make_desktop(alice, status=DesktopStatus.PROVISIONING)
    lifecycle.note_progress(desktop.pk, "the guest is starting", status=DesktopStatus.PROVISIONING)
    assert told(alice) == []  # started is not ready
    lifecycle.transition(desktop.pk, DesktopStatus.RUNNING, started_at=timezone.now())
    (ready,) = told(alice, NotificationKind.DESKTOP_READY)
    assert ready.title == "cad-1 is ready" and ready.link == f"/desktops/{desktop.pk}/" and ready.desktop == desktop
    assert told(bob) == []


def test_expiring_soon_is_told_once_at_the_sweeps_warning_time_and_its_extend_button_works(
    alice, make_desktop, client, settings
):
    settings.PORTAL_EXPIRY_WARNING_S = 900
    desktop = make_desktop(alice, expires_at=timezone.now() + timedelta(minutes=20))
    lifecycle.expire_due_desktops()
    assert told(alice) == []  # 20 minutes away: not yet
    Desktop.objects.filter(pk=desktop.pk).update(expires_at=timezone.now() + timedelta(minutes=10))
    lifecycle.expire_due_desktops()
    lifecycle.expire_due_desktops()
    (warning,) = told(alice, NotificationKind.DESKTOP_EXPIRING)
    assert warning.title == "cad-1 expires soon" and warning.data["extendable"] is True

    client.force_login(alice)
    page = client.get("/notifications/").content.decode()
    assert f'action="/desktops/{desktop.pk}/extend/"' in page and "Extend cad-1 by 1 h" in page
    before = Desktop.objects.get(pk=desktop.pk).expires_at
    response = client.post(f"/desktops/{desktop.pk}/extend/", {"hours": "1"})  # the button's one click
    assert response.status_code == 302
    assert Desktop.objects.get(pk=desktop.pk).expires_at == before + timedelta(hours=1)


def test_expired_is_told_when_the_sweep_ends_it(alice, make_desktop):
    desktop = make_desktop(alice, expires_at=timezone.now() - timedelta(seconds=1))
    lifecycle.expire_due_desktops()
    lifecycle.transition(desktop.pk, DesktopStatus.EXPIRED)  # the teardown's end, as the worker does it
    (expired,) = told(alice, NotificationKind.DESKTOP_EXPIRED)
    assert expired.title == "cad-1 expired"


def test_a_drain_tells_each_owner_with_the_reason_and_stop_time(alice, bob, admin, make_desktop, host):
    mine, theirs = make_desktop(alice), make_desktop(bob, name="bob-1")
    make_desktop(bob, name="gone", status=DesktopStatus.RELEASED)
    stop_at = timezone.now() + timedelta(hours=1)
    drain_host(host, reason="BIOS update", stop_at=stop_at, actor=admin)
    (a,) = told(alice, NotificationKind.HOST_MAINTENANCE)
    (b,) = told(bob, NotificationKind.HOST_MAINTENANCE)
    assert (a.desktop, b.desktop) == (mine, theirs)
    assert "is being drained: BIOS update" in a.body and a.stop_at == stop_at
    assert told(admin) == []


def test_maintenance_tells_the_owners_of_desktops_on_the_host(alice, admin, make_desktop, host):
    make_desktop(alice)
    set_host_state(host, HostState.MAINTENANCE, actor=admin, reason="fan replacement")
    (note,) = told(alice, NotificationKind.HOST_MAINTENANCE)
    assert "gpu-7" in note.body and "fan replacement" in note.body and "keeps running" in note.body


def test_a_quota_request_tells_the_admins_and_its_decision_tells_the_requester(alice, admin, auditor, tenant):
    request = quotas.request_quota_increase(actor=alice, tenant=tenant, changes={"max_desktops": 9}, reason="class")
    (new,) = told(admin, NotificationKind.QUOTA_REQUESTED)
    assert new.title == "New quota request from Acme Research" and "9 concurrent desktops" in new.body
    assert told(auditor) == [] and told(alice) == []
    quotas.reject_quota_request(request.pk, actor=admin, reason="not this term")
    (decided,) = told(alice, NotificationKind.QUOTA_DECIDED)
    assert decided.title == "Your quota request for Acme Research was rejected"
    assert "not this term" in decided.body


def test_fleet_problems_are_told_to_the_admins_once_per_appearance(admin, alice, host, settings):
    settings.PORTAL_HEARTBEAT_TIMEOUT_S = 60
    Host.objects.filter(pk=host.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
    assert mark_silent_hosts_offline() == ["gpu-7"]
    assert fleet.check_fleet() == {"opened": 1, "closed": 0}
    assert fleet.check_fleet() == {"opened": 0, "closed": 0}  # told once
    (offline,) = told(admin, NotificationKind.FLEET_PROBLEM)
    assert offline.title == "Host offline: gpu-7"
    Host.objects.filter(pk=host.pk).update(state=HostState.ONLINE, last_sync_error="cannot connect: refused")
    assert fleet.check_fleet() == {"opened": 1, "closed": 1}
    assert [n.title for n in told(admin, NotificationKind.FLEET_PROBLEM)] == [
        "Host unreachable: gpu-7",
        "Host offline: gpu-7",
    ]
    assert told(alice) == []


def test_a_change_that_rolls_back_tells_nobody(alice, make_desktop):
    desktop = make_desktop(alice, status=DesktopStatus.PROVISIONING)
    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.transition(desktop.pk, DesktopStatus.FAILED, reason="x", end_reason=EndReason.FAILED)
        raise RuntimeError("the caller's transaction fails after the move")
    assert told(alice) == [] and Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.PROVISIONING


def test_a_failing_notification_never_fails_the_change(alice, make_desktop, monkeypatch):
    def broken(event):
        Notification.objects.create(recipient_id=alice.pk, kind="desktop-failed", title="half")
        raise ValueError("a bug in a handler")

    monkeypatch.setitem(events.HANDLERS, "desktop.failed", broken)
    desktop = make_desktop(alice, status=DesktopStatus.PROVISIONING)
    lifecycle.transition(desktop.pk, DesktopStatus.FAILED, reason="x")
    assert Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.FAILED
    assert told(alice) == []  # its half-written rows went with its savepoint
