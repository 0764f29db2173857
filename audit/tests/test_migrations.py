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
