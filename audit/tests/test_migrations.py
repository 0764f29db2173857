"""Events written before the hash chain existed are linked by the migration that adds it."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit import chain


@pytest.mark.django_db(transaction=True)
def test_existing_events_are_chained_by_the_migration():
    executor = MigrationExecutor(connection)
    executor.migrate([("audit", "0002_append_only_trigger")])
    old = MigrationExecutor(connection).loader.project_state([("audit", "0002_append_only_trigger")]).apps
    OldEvent = old.get_model("audit", "AuditEvent")
    for i in range(3):
        OldEvent.objects.create(occurred_at=timezone.now(), verb=f"old.{i}", object_type="test.thing", object_id=str(i))
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    result = chain.verify()
    assert result.ok and result.events == 3 and result.head_seq == 3


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target] if target else executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_existing_checkpoints_are_numbered_chained_and_signed_again_only_when_their_old_signature_held():
    import hashlib
    import hmac

    from django.conf import settings

    from audit import hashing
    from audit.models import Checkpoint
    from audit.tests.tampering import by_seq, kinds, write

    write(3)
    _migrate(("audit", "0006_exportjob_moved_to_reports"))
    old = MigrationExecutor(connection).loader.project_state([("audit", "0006_exportjob_moved_to_reports")]).apps
    OldCheckpoint = old.get_model("audit", "Checkpoint")
    now = timezone.now()

    def old_signature(seq, hash_):
        message = f"{seq}:{hash_}:{hashing.when(now)}".encode()
        return hmac.new(settings.AUDIT_CHECKPOINT_KEY.encode(), message, hashlib.sha256).hexdigest()

    OldCheckpoint.objects.create(seq=2, hash=by_seq(2).hash, created_at=now, signature=old_signature(2, by_seq(2).hash))
    OldCheckpoint.objects.create(seq=3, hash=by_seq(3).hash, created_at=now, signature="0" * 64)  # forged before
    _migrate(None)
    first, second = Checkpoint.objects.order_by("number")
    assert (first.number, first.events, first.prev_signature) == (1, 2, hashing.GENESIS)
    assert (second.number, second.events, second.prev_signature) == (2, 3, first.signature)
    assert kinds(chain.verify()) == [("bad-signature", 3)]  # the forged one stays forged
