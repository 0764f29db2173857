"""In the portal: the page, the bell and its count pushed live, preferences, and isolation: each person
sees only their own notifications, on the page and on the websocket."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async as sync_to_async

from allocations.choices import DesktopStatus
from allocations.services import lifecycle
from allocations.tests.live import frames, live_socket
from notifications import services
from notifications.models import Delivery, Notification, NotificationKind
from notifications.preferences import set_preferences


def fail(desktop, reason="its host is offline"):
    return lifecycle.transition(desktop.pk, DesktopStatus.FAILED, reason=reason)


@pytest.mark.django_db
def test_the_page_and_the_bell_show_only_ones_own_notifications(alice, bob, make_desktop, client):
    fail(make_desktop(alice, status=DesktopStatus.PROVISIONING), reason="alice's secret reason")
    (mine,) = Notification.objects.filter(recipient=alice)
    client.force_login(bob)
    page = client.get("/notifications/").content.decode()
    assert "secret" not in page and 'id="notification-count" class="badge" data-count="0" hidden' in page
    assert client.get(f"/notifications/{mine.pk}/").status_code == 404
    assert client.post(f"/notifications/{mine.pk}/read/").status_code == 404
    client.post("/notifications/read-all/")
    assert Notification.objects.get(pk=mine.pk).read_at is None
    assert client.get("/notifications/unread/").json() == {"unread": 0}

    client.force_login(alice)
    page = client.get("/notifications/").content.decode()
    assert "alice&#x27;s secret reason" in page and 'data-count="1">1<' in page
    assert client.get("/notifications/unread/").json() == {"unread": 1}
    opened = client.get(f"/notifications/{mine.pk}/")
    assert opened.status_code == 302 and opened["Location"] == mine.link
    assert client.get("/notifications/unread/").json() == {"unread": 0}


@pytest.mark.django_db
def test_mark_all_read(alice, make_desktop, client):
    fail(make_desktop(alice, status=DesktopStatus.PROVISIONING))
    fail(make_desktop(alice, name="cad-2", status=DesktopStatus.PROVISIONING))
    client.force_login(alice)
    assert services.unread_count(alice) == 2
    assert client.post("/notifications/read-all/").status_code == 302
    assert services.unread_count(alice) == 0


@pytest.mark.django_db
def test_preferences_off_means_no_mail_but_the_portal_as_chosen(alice, make_desktop, client, smtp, eager):
    """alice keeps failures in the portal but not by mail, and wants ready desktops neither way: no mail
    reaches the server, one notification is shown, none for the ready desktop."""
    client.force_login(alice)
    form = {f"{kind}-portal": "on" for kind in NotificationKind.values if kind != NotificationKind.DESKTOP_READY}
    assert client.post("/notifications/preferences/", form).status_code == 302
    with eager():
        fail(make_desktop(alice, status=DesktopStatus.PROVISIONING))
        lifecycle.transition(make_desktop(alice, name="cad-2", status=DesktopStatus.PROVISIONING).pk, "running")
    assert [n.kind for n in Notification.objects.filter(recipient=alice)] == [NotificationKind.DESKTOP_FAILED]
    assert Delivery.objects.count() == 0 and smtp.inbox == []
    page = client.get("/notifications/").content.decode()
    assert 'name="desktop-failed-portal" id="id_desktop-failed-portal" checked' in page
    assert 'name="desktop-failed-email" id="id_desktop-failed-email">' in page
    assert "New quota request" not in page  # the admins' kinds are not offered to members


@pytest.mark.django_db
def test_mail_only_is_not_shown_in_the_portal(alice, make_desktop):
    set_preferences(alice, {NotificationKind.DESKTOP_FAILED: (False, True)}, actor=alice)
    fail(make_desktop(alice, status=DesktopStatus.PROVISIONING))
    assert services.unread_count(alice) == 0 and Delivery.objects.filter(recipient=alice).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_bell_count_is_pushed_live_to_its_owner_only(alice, bob, make_desktop):
    desktop = await sync_to_async(make_desktop)(alice, status=DesktopStatus.PROVISIONING)
    alice_socket, bob_socket = await live_socket(alice), await live_socket(bob)
    await sync_to_async(fail)(desktop)
    (pushed,) = [f["data"] for f in await frames(alice_socket) if f["event"] == "notification"]
    assert pushed["unread"] == 1 and pushed["title"] == "cad-1 failed" and pushed["link"] == f"/desktops/{desktop.pk}/"
    assert [f for f in await frames(bob_socket) if f["event"].startswith("notification")] == []

    await sync_to_async(services.mark_all_read)(alice)
    (read,) = [f["data"] for f in await frames(alice_socket) if f["event"] == "notification.read"]
    assert read == {"unread": 0}
    assert await frames(bob_socket) == []
    await alice_socket.disconnect()
    await bob_socket.disconnect()
