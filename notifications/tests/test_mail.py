"""Mail through a real SMTP server (aiosmtpd): rendered in text and HTML, in the person's zone, with links
under the public URL; queued, never sent inside the action, and retried until it arrives, once."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from allocations.choices import DesktopStatus, EndReason
from allocations.models import Desktop
from allocations.services import lifecycle
from core.tests.mailserver import SMTPServer
from notifications import mail, tasks
from notifications.models import Delivery, DeliveryStatus, Notification, NotificationKind
from notifications.tests.conftest import PUBLIC_URL
from tenancy.models import Preferences

pytestmark = pytest.mark.django_db


def parts(message):
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def test_a_failed_desktop_is_mailed_with_its_reason_in_text_and_html_in_the_owners_zone(
    smtp, eager, alice, make_desktop
):
    """The build failed on the host: the owner's mail says why in words, has a text and an HTML part,
    shows the time in the zone they chose (Tokyo, JST), and links to the desktop under the public URL."""
    Preferences.objects.create(user=alice, time_zone="Asia/Tokyo")
    desktop = make_desktop(alice, status=DesktopStatus.PROVISIONING)
    with eager():
        lifecycle.transition(
            desktop.pk,
            DesktopStatus.FAILED,
            reason="The desktop could not be started on its host.",
            end_reason=EndReason.FAILED,
            detail="libvirt: unsupported configuration",  # the driver's words: admins only
        )
    (message,) = smtp.wait_for(1)
    assert message["To"] == "alice@example.edu" and message["X-Envelope-To"] == "alice@example.edu"
    assert message["Subject"] == "[GPU Portal] cad-1 failed"
    text, html = parts(message)
    assert "Your desktop cad-1 failed: The desktop could not be started on its host." in text
    assert "could not be started on its host" in html and "unsupported configuration" not in text + html
    link = f"{PUBLIC_URL}/desktops/{desktop.pk}/"
    assert f"Open in the portal: {link}" in text and f'href="{link}"' in html
    sent = Notification.objects.get(kind=NotificationKind.DESKTOP_FAILED).created_at
    local = timezone.localtime(sent, timezone=__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assert f"Sent {local:%Y-%m-%d %H:%M} JST." in text and f"{local:%Y-%m-%d %H:%M} JST" in html
    assert Delivery.objects.get().status == DeliveryStatus.SENT


def test_a_mail_server_that_is_down_fails_nothing_and_the_mail_arrives_once_when_it_is_back(
    settings, eager, alice, admin, make_desktop, client
):
    """The SMTP server is down while the desktop fails: the change commits and the request to release another
    desktop answers 302 as ever; the delivery waits with its error, visible to the admins, and is sent
    by the retry task once a server listens on that port again, exactly once."""
    down = SMTPServer()
    down.use_in(settings)  # nothing listens on its port: connections are refused
    desktop = make_desktop(alice, status=DesktopStatus.PROVISIONING)
    other = make_desktop(alice, name="cad-2")
    with eager():
        lifecycle.transition(desktop.pk, DesktopStatus.FAILED, reason="its host is offline", end_reason="host-lost")
        client.force_login(alice)
        response = client.post(f"/desktops/{other.pk}/release/")
    assert response.status_code == 302
    assert Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.FAILED
    assert Desktop.objects.get(pk=other.pk).status in (DesktopStatus.STOPPING, DesktopStatus.RELEASED)

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert "Connection refused" in delivery.last_error or "ConnectionRefused" in delivery.last_error
    assert delivery.next_attempt_at > timezone.now()
    assert tasks.send_due() == {mail.SENT: 0, mail.RETRY: 0, mail.GAVE_UP: 0, mail.BUSY: 0}  # not due yet

    client.force_login(admin)
    page = client.get("/notifications/deliveries/").content.decode()
    assert "alice@example.edu" in page and "refused" in page.lower()

    with SMTPServer(port=down.port) as smtp:
        Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))  # its backoff passed
        assert tasks.send_due()[mail.SENT] == 1
        assert tasks.send_due()[mail.SENT] == 0
        assert tasks.send_delivery(delivery.pk) == mail.BUSY  # a second delivery of the task sends nothing
        (message,) = smtp.wait_for(1)
        assert "its host is offline" in parts(message)[0]
        assert len(smtp.inbox) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 2, "")


def test_mail_given_up_after_its_attempts_shows_failed_and_an_admin_sends_it_again(
    settings, eager, alice, admin, make_desktop, client
):
    down = SMTPServer()
    down.use_in(settings)
    desktop = make_desktop(alice, status=DesktopStatus.PROVISIONING)
    with eager():
        lifecycle.transition(desktop.pk, DesktopStatus.FAILED, reason="its host is offline")
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(attempts=mail.MAX_ATTEMPTS - 1)
    assert mail.send(delivery.pk) == mail.GAVE_UP
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert mail.send_due(now=timezone.now() + timedelta(days=1))[mail.SENT] == 0  # given up: left alone

    client.force_login(alice)
    assert client.get("/notifications/deliveries/").status_code == 403  # the queue is the admins'
    assert client.post(f"/notifications/deliveries/{delivery.pk}/retry/").status_code == 403
    client.force_login(admin)
    page = client.get("/notifications/deliveries/").content.decode()
    assert 'id="deliveries-failed">1<' in page
    with SMTPServer(port=down.port) as smtp:
        with eager():  # the send is queued with the request's transaction, and runs after its commit
            response = client.post(f"/notifications/deliveries/{delivery.pk}/retry/")
        assert response.status_code == 302
        smtp.wait_for(1)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT


def test_the_expiry_warning_mail_has_the_end_time_and_a_link_to_extend(smtp, eager, alice, make_desktop, settings):
    Preferences.objects.create(user=alice, time_zone="America/New_York")
    ends = timezone.now() + timedelta(minutes=10)
    desktop = make_desktop(alice, expires_at=ends)
    with eager():
        assert lifecycle.expire_due_desktops()["warned"] == 1
    (message,) = smtp.wait_for(1)
    text, html = parts(message)
    local = timezone.localtime(ends, timezone=__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert f"Ends: {local:%Y-%m-%d %H:%M} {local.tzname()}" in text
    notification = Notification.objects.get(kind=NotificationKind.DESKTOP_EXPIRING, desktop=desktop)
    assert f"{PUBLIC_URL}/notifications/{notification.pk}/" in text and "Extend by 1 hour" in html


def test_an_invitation_mail_sets_the_password_of_a_person_added_by_address(smtp, eager, admin, tenant, client):
    """A platform admin adds someone by an address nobody has: the new account (no usable password) is
    mailed an invitation whose link, under the public URL, lets them choose a password and sign in; the
    link works once."""
    client.force_login(admin)
    with eager():
        response = client.post(
            "/people/add/", {"user": "carol@example.edu", "role": "tenant-member", "tenant": tenant.pk}
        )
    assert response.status_code == 302
    (message,) = smtp.wait_for(1)
    assert message["To"] == "carol@example.edu" and "set your password" in message["Subject"]
    text, html = parts(message)
    assert "padmin added you to the GPU Portal as tenant member of Acme Research." in text
    link = re.search(rf"{re.escape(PUBLIC_URL)}(/notifications/invitation/\S+/)", text).group(1)
    assert f'href="{PUBLIC_URL}{link}"' in html

    client.logout()
    form = client.get(link, follow=True)
    assert form.status_code == 200 and b"Choose your password" in form.content
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": "a-Long-pass-42", "new_password2": "a-Long-pass-42"}
    )
    assert done.status_code == 302
    signed_in = client.post("/accounts/login/", {"username": "carol", "password": "a-Long-pass-42"})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/"
    client.logout()
    again = client.get(link, follow=True)
    assert b"does not work any more" in again.content


def test_a_desktop_built_on_the_lab_host_mails_its_owner_when_it_is_ready(smtp, eager, alice, tenant, lab):
    """End to end on the libvirt test-driver lab: requested, built and booted by the (inline) worker; the
    owner's mail says it is ready once it runs, and the request itself was answered before any mail."""
    from allocations.services.request import request_desktop
    from allocations.tests.factories import make_template
    from inventory.models import VGPUProfile

    lab("lab-a40=A40x2")
    tenant.quota.max_framebuffer_mib = 100000
    tenant.quota.save()
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    with eager():
        desktop = request_desktop(actor=alice, template_id=template.pk, duration_hours=1)
        assert Delivery.objects.count() == 0  # nothing is mailed inside the request
    (message,) = smtp.wait_for(1)
    assert Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.RUNNING
    text, _ = parts(message)
    assert message["Subject"] == f"[GPU Portal] {desktop.name} is ready"
    assert "running and its guest is up" in text and f"{PUBLIC_URL}/desktops/{desktop.pk}/" in text
