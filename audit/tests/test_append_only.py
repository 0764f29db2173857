"""Audit events are append-only: the ORM refuses changes everywhere; PostgreSQL refuses them in the database."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit import services as audit
from audit.models import AppendOnlyError, AuditEvent

pytestmark = pytest.mark.django_db


def _event() -> AuditEvent:
    with transaction.atomic():
        return audit.record("thing.created", actor=None, object_type="test.thing", object_id=1, after={"a": 1})


def test_orm_refuses_to_change_or_delete_an_event():
    event = _event()
    event.verb = "thing.forged"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(verb="thing.forged")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).verb == "thing.created"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET verb = 'thing.forged' WHERE id = %s",
        "UPDATE audit_auditevent SET after = NULL WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ],
)
def test_postgresql_trigger_refuses_raw_update_and_delete(sql):
    event = _event()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).verb == "thing.created"
    assert AuditEvent.objects.get(pk=event.pk).after == {"a": 1}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
def test_postgresql_trigger_is_installed():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass AND NOT tgisinternal"
        )
        assert [row[0] for row in cursor.fetchall()] == ["audit_auditevent_append_only"]


def test_inserting_still_works_and_keeps_order():
    first, second = _event(), _event()
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [second.pk, first.pk]


@pytest.mark.django_db(transaction=True)
def test_record_refuses_to_run_outside_a_transaction():
    with pytest.raises(RuntimeError, match="must run inside the transaction"):
        audit.record("thing.created", actor=None, object_type="test.thing")


def test_event_rolls_back_with_the_change_it_records():
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        audit.record("thing.created", actor=None, object_type="test.thing")
        1 / 0  # noqa: B018 - the change fails after the event was written
    assert not AuditEvent.objects.exists()
