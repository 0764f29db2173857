"""The hash chain catches every kind of tampering done directly in the database, even by someone
who can switch the append-only trigger off; concurrent writers keep one chain."""

import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction

from audit import chain, checkpoints, hashing
from audit import services as audit
from audit.models import AppendOnlyError, AuditEvent, ChainHead, Checkpoint
from audit.tests.tampering import by_seq, kinds, raw, rewrite_from, write

pytestmark = pytest.mark.django_db


def test_an_untouched_chain_verifies():
    write(5)
    result = chain.verify()
    assert result.ok and result.events == 5 and result.head_seq == 5
    events = list(AuditEvent.objects.order_by("seq"))
    assert events[0].prev_hash == hashing.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    assert ChainHead.objects.get().hash == events[-1].hash


def test_an_edited_event_is_named():
    write(5)
    raw(("UPDATE audit_auditevent SET after = %s WHERE seq = 3", ['{"n": 999}']))
    result = chain.verify()
    assert not result.ok
    first = result.problems[0]
    assert (first.kind, first.seq, first.event_id) == ("edited", 3, by_seq(3).pk)


def test_a_deleted_event_leaves_a_gap_and_a_broken_link():
    write(5)
    deleted = by_seq(3).pk
    raw(("DELETE FROM audit_auditevent WHERE id = %s", [deleted]))
    kinds = [(p.kind, p.seq) for p in chain.verify().problems]
    assert kinds[:2] == [("gap", 3), ("broken-link", 4)]


def test_an_event_deleted_at_the_end_is_caught_by_the_signed_checkpoint():
    write(4)
    assert checkpoints.checkpoint().seq == 4
    raw("DELETE FROM audit_auditevent WHERE seq = 4")
    problems = chain.verify().problems
    assert kinds(chain.verify()) == [("deleted-tail", 4), ("deleted-tail", 4), ("head-mismatch", 4)]
    assert "checkpoint 1 covers position 4 (4 events) but the chain ends at 3" in problems[0].detail


def test_an_inserted_event_is_caught_even_with_a_valid_looking_hash():
    write(3)
    forged = {
        "seq": 4,
        "occurred_at": by_seq(3).occurred_at,
        "actor_id": None,
        "actor_username": "mallory",
        "tenant_id": None,
        "tenant_name": "",
        "verb": "quota.updated",
        "object_type": "allocations.quota",
        "object_id": "1",
        "object_repr": "",
        "before": None,
        "after": None,
        "source_ip": None,
        "request_id": "",
        "prev_hash": by_seq(2).hash,
    }  # slipped in after seq 2
    raw("UPDATE audit_auditevent SET seq = seq + 1 WHERE seq = 3")
    raw(
        (
            "INSERT INTO audit_auditevent (occurred_at, actor_username, tenant_name, verb, object_type, object_id, "
            "object_repr, request_id, seq, prev_hash, hash) VALUES (%s, 'mallory', '', 'quota.updated', "
            "'allocations.quota', '1', '', '', 3, %s, %s)",
            [forged["occurred_at"], forged["prev_hash"], hashing.event_hash({**forged, "seq": 3})],
        )
    )
    problems = chain.verify().problems
    assert problems and problems[0].kind in ("edited", "broken-link") and problems[0].seq == 4


def test_swapped_events_are_caught():
    write(4)
    a, b = by_seq(2), by_seq(3)
    raw(
        ("UPDATE audit_auditevent SET seq = -1 WHERE id = %s", [a.pk]),
        ("UPDATE audit_auditevent SET seq = 2 WHERE id = %s", [b.pk]),
        ("UPDATE audit_auditevent SET seq = 3 WHERE id = %s", [a.pk]),
    )
    first = chain.verify().problems[0]
    assert first.kind == "broken-link" and first.seq == 2 and first.event_id == b.pk


def test_rewriting_history_with_recomputed_hashes_breaks_the_checkpoint():
    write(4)
    checkpoints.checkpoint()
    rewrite_from(2, after={"n": 1002})  # the forger recomputes every later hash and moves the head
    problems = chain.verify().problems
    assert kinds(chain.verify()) == [("checkpoint-mismatch", 4), ("checkpoint-mismatch", 4)]
    assert [p.detail.split(" recorded")[0] for p in problems] == ["checkpoint 1", "anchored checkpoint 1"]


def test_a_forged_checkpoint_signature_is_caught():
    write(2)
    made = checkpoints.checkpoint()
    with pytest.raises(AppendOnlyError):
        Checkpoint.objects.filter(pk=made.pk).update(signature="0" * 64)
    raw(("UPDATE audit_checkpoint SET signature = %s WHERE id = %s", ["0" * 64, made.pk]))
    assert kinds(chain.verify()) == [("bad-signature", 2)]


def test_checkpoint_only_when_the_head_moved():
    write(2)
    assert checkpoints.checkpoint() is not None
    assert checkpoints.checkpoint() is None
    write(1)
    third = checkpoints.checkpoint()
    assert (third.seq, third.number, third.events) == (3, 2, 3)
    assert third.prev_signature == Checkpoint.objects.get(number=1).signature


def test_verify_command_reports_the_first_problem_and_is_audited(capsys):
    write(3)
    call_command("verify_audit", "--checkpoint")
    out = capsys.readouterr().out
    assert "OK: 3 events chained up to seq 3" in out and "Signed checkpoint 1 at seq 4" in out
    raw("UPDATE audit_auditevent SET verb = 'thing.forged' WHERE seq = 2")
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_audit")
    out = capsys.readouterr().out
    assert f"TAMPERED: first problem: edited at event id {by_seq(2).pk} (seq 2)" in out
    assert AuditEvent.objects.filter(verb="audit.verified").count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_concurrent_writers_keep_one_chain():
    barrier = threading.Barrier(16)

    def writer(n):
        barrier.wait()
        for i in range(10):
            with transaction.atomic():
                audit.record("race.write", actor=None, object_type="test.thing", object_id=f"{n}-{i}")
        connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = chain.verify()
    assert result.ok, result.problems
    assert result.events == 160 and sorted(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, 161))
