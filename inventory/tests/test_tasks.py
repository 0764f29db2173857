"""Host tasks: routed to the host's own queue, retry only what can succeed later."""

import pytest
from celery.exceptions import Retry

from inventory import tasks
from inventory.models import Host

pytestmark = pytest.mark.django_db


def test_sync_task_reads_the_host(lab):
    host = lab(sync=False)
    assert "lab-a40: 2 GPU(s)" in tasks.sync_host_by_id.apply(args=[host.pk]).get()
    assert Host.objects.get(pk=host.pk).state == "online"


def test_sync_task_for_a_deleted_host_does_nothing():
    assert tasks.sync_host_by_id.apply(args=[987654]).get() is None


def test_unreachable_host_is_retried_with_backoff(monkeypatch):
    host = Host.objects.create(name="far", libvirt_uri="qemu+tcp://127.0.0.1:1/system")
    seen = {}

    def fake_retry(*, exc, countdown):
        seen.update(exc=exc, countdown=countdown)
        return Retry(exc=exc, when=countdown)

    monkeypatch.setattr(tasks.sync_host_by_id, "retry", fake_retry)
    with pytest.raises(Retry):
        tasks.sync_host_by_id.run(host.pk)
    assert seen["exc"].retryable and seen["countdown"] == 5


def test_permanent_error_is_not_retried(tmp_path, monkeypatch):
    host = Host.objects.create(name="broken", libvirt_uri=f"test://{tmp_path}/missing.xml")
    monkeypatch.setattr(tasks.sync_host_by_id, "retry", lambda **kw: pytest.fail("must not retry"))
    assert tasks.sync_host_by_id.run(host.pk) is None
    assert "failed to parse" in Host.objects.get(pk=host.pk).last_sync_error


def test_sync_all_queues_each_host_on_its_own_queue(monkeypatch):
    Host.objects.create(name="a", libvirt_uri="test:///default")
    Host.objects.create(name="b", libvirt_uri="test:///default")
    sent = []
    monkeypatch.setattr(tasks.sync_host_by_id, "apply_async", lambda args, queue: sent.append((args, queue)))
    assert tasks.sync_all_hosts.run() == 2
    assert sorted(queue for _, queue in sent) == ["host.a", "host.b"]
