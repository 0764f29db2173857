"""Work a committed change asked for is never lost (core.outbox) and a desktop whose worker died is
picked up again (services.leases). Fast tier: a real refused broker connection (nothing listens on
port 1); the integration tier (test_integration_outage.py) stops a real Redis and kills real workers."""

from datetime import timedelta

import kombu.pools
import pytest
from django.utils import timezone

from allocations import tasks
from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.services import hosting, leases, lifecycle
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from core import outbox
from core.models import OutboxMessage
from inventory.models import VGPUProfile
from inventory.services.connect import driver_for
from portal.celery import app

pytestmark = pytest.mark.django_db

DEAD_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture
def template(catalog, tenant):
    tenant.quota.max_desktops = 4
    tenant.quota.max_framebuffer_mib = 4 * 24576
    tenant.quota.save()
    return make_template("CAD", profile=VGPUProfile.objects.get(name="A40-24Q"), tenants=[tenant])


@pytest.fixture
def broker(settings):
    """``broker.down()``: the app publishes to a port where nothing listens (a real refused connection);
    ``broker.back()``: tasks run inline from now on, as a worker would run what reaches the broker."""

    def use(url):
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None
        kombu.pools.reset()

    class Broker:
        original = app.conf.broker_url

        def down(self):
            app.conf.task_always_eager = False
            use(DEAD_BROKER)

        def back(self):
            use(self.original)
            app.conf.task_always_eager = True
            app.conf.task_eager_propagates = True

    yield Broker()
    use(Broker.original)
    app.conf.task_always_eager = False


def age_outbox():
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(seconds=outbox.GRACE_S + 1))


def test_redis_down_for_a_request_and_a_release_answers_what_happened_and_loses_nothing(
    api, lab, tenant_member, template, broker, django_capture_on_commit_callbacks
):
    """Reproduction (issue 15): with Redis down, POST /api/desktops/ and POST .../release/ answered 500
    although the change had committed (kombu OperationalError from the after-commit enqueue), and the
    work reached the host only at the stuck-sweeper, 16 minutes later."""
    lab()
    client = api.as_user(tenant_member)
    broker.back()
    with django_capture_on_commit_callbacks(execute=True):
        running = client.post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json")
    assert Desktop.objects.get(pk=running.json()["id"]).status == DesktopStatus.RUNNING

    broker.down()
    with django_capture_on_commit_callbacks(execute=True):
        asked = client.post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json")
        released = client.post(f"/api/desktops/{running.json()['id']}/release/")
    assert asked.status_code == 201, asked.content  # accepted: it will proceed
    assert released.status_code == 200, released.content
    waiting = OutboxMessage.objects.filter(sent_at__isnull=True).order_by("id")
    assert [(m.task, m.args) for m in waiting] == [
        ("allocations.tasks.provision", [asked.json()["id"]]),
        ("allocations.tasks.teardown", [running.json()["id"]]),
    ]
    assert all("127.0.0.1:1" in m.last_error for m in waiting)
    age_outbox()
    assert outbox.relay_pending() == {"sent": 0, "failed": 1, "left": 2}  # still down: kept, in order

    broker.back()
    assert outbox.relay_pending() == {"sent": 2, "failed": 0, "left": 0}
    assert Desktop.objects.get(pk=asked.json()["id"]).status == DesktopStatus.RUNNING
    assert Desktop.objects.get(pk=running.json()["id"]).status == DesktopStatus.RELEASED
    assert outbox.relay_pending() == {"sent": 0, "failed": 0, "left": 0}  # nothing sent twice


def test_work_of_a_change_that_rolled_back_is_never_sent(lab, tenant_member, template, broker):
    from django.db import transaction

    lab()
    with pytest.raises(RuntimeError), transaction.atomic():
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1)
        raise RuntimeError("the change fails after asking for its task")
    assert not OutboxMessage.objects.exists() and not Desktop.objects.exists()


def test_a_row_being_sent_is_not_sent_again_until_its_sender_is_presumed_dead(broker):
    broker.back()
    message = OutboxMessage.objects.create(task="allocations.tasks.expire_due", args=[])
    OutboxMessage.objects.filter(pk=message.pk).update(claimed_until=timezone.now() + timedelta(seconds=30))
    assert outbox.send_one(message.pk) == outbox.BUSY
    OutboxMessage.objects.filter(pk=message.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert outbox.send_one(message.pk) == outbox.SENT
    assert outbox.send_one(message.pk) == outbox.BUSY  # sent: never again
    assert OutboxMessage.objects.get(pk=message.pk).attempts == 1


def test_a_second_delivery_while_a_live_worker_builds_does_nothing(lab, tenant_member, template):
    lab()
    desktop = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1)
    assert leases.take(desktop.pk, "worker-one", [DesktopStatus.REQUESTED])
    assert tasks.provision.apply(args=[desktop.pk]).get() is None
    desktop.refresh_from_db()
    assert (desktop.status, desktop.lease_holder) == (DesktopStatus.REQUESTED, "worker-one")


def test_a_worker_killed_while_provisioning_is_picked_up_within_a_minute_and_resumes(
    lab, tenant_member, template, run_tasks, settings
):
    """Reproduction (issue 15): a worker SIGKILLed while provisioning left the desktop "building on the
    host" for 15 minutes, then failed, never retried (a Redis restart also dropped the unacknowledged
    message). Here the dead worker had built the domain and held the lease; nothing is in any queue."""
    host = lab()
    desktop = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1)
    assert leases.take(desktop.pk, "killed-worker", [DesktopStatus.REQUESTED])
    lifecycle.transition(desktop.pk, DesktopStatus.PROVISIONING, reason="building on the host")
    hosting.build_desktop(Desktop.objects.get(pk=desktop.pk))  # what it did before it died
    span = timedelta(seconds=settings.PORTAL_TASK_LEASE_S)
    assert tasks.sweep_stuck.apply().get()["requeued"] == 0  # its lease is live: leave it to its worker

    # It stopped renewing: the lease lapses one span after its last renewal.
    Desktop.objects.filter(pk=desktop.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1), status_changed_at=timezone.now() - span * 2
    )
    with run_tasks():
        assert tasks.sweep_stuck.apply().get() == {"requeued": 1, "abandoned": 0, "host_lost": 0}
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING and desktop.lease_holder == ""
    driver = driver_for(host)
    assert [d.name for d in driver.list_domains()] == [desktop.domain_name]  # adopted, not built twice
    assert [m.uuid for m in driver.list_mdevs()] == [str(desktop.mdev_uuid)]
    requeued = AuditEvent.objects.get(verb="desktop.task_requeued")
    assert requeued.after["reason"] == "its worker stopped answering"


def test_a_retry_keeps_the_lease_so_the_sweeper_does_not_start_a_second_build(lab, tenant_member, template):
    lab()
    desktop = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1)
    with leases.held(desktop.pk, "task-1", [DesktopStatus.REQUESTED]) as lease:
        lease.keep_for(120)
    desktop.refresh_from_db()
    assert desktop.lease_holder == "task-1" and desktop.lease_until > timezone.now() + timedelta(seconds=120)
    assert not leases.take(desktop.pk, "task-2", [DesktopStatus.REQUESTED])
    assert leases.take(desktop.pk, "task-1", [DesktopStatus.REQUESTED])  # its own retry
