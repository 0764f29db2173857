"""The audit trail against someone with database access (issue 15): each attack the issue names, done in
raw SQL around the portal (on PostgreSQL with the triggers switched off, as a superuser can; where the
triggers are on, the database refuses first), and what verification then says. Checkpoints are anchored
in a file outside the database (``anchor_file``, audit/tests/conftest.py)."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit import anchor, chain, checkpoints, hashing
from audit.models import AppendOnlyError, AuditEvent, ChainHead, Checkpoint
from audit.tests.tampering import by_seq, kinds, raw, rewrite_from, write

pytestmark = pytest.mark.django_db
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the triggers exist on PostgreSQL only")


def anchored(anchor_file) -> list[dict]:
    return [json.loads(line) for line in anchor_file.read_text().splitlines()]


def test_an_honest_chain_verifies_against_its_anchor(anchor_file):
    write(3)
    first = checkpoints.checkpoint()
    write(2)
    second = checkpoints.checkpoint()
    lines = anchored(anchor_file)
    assert [(r["number"], r["seq"], r["events"]) for r in lines] == [(1, 3, 3), (2, 5, 5)]
    assert lines[1]["prev_signature"] == first.signature == lines[0]["signature"]
    assert lines[1]["signature"] == second.signature
    result = chain.verify()
    assert result.ok, result.problems
    assert (result.checkpoints, result.anchored, result.protected_seq) == (2, 2, 5)
    assert result.summary() == (
        f"OK: 5 events chained up to seq 5, 2 signed checkpoint(s) match, 2 of them in the anchor ({anchor_file}); "
        "events after seq 5 are not anchored yet."
    )


def test_rewriting_events_after_the_last_checkpoint_is_undetectable_only_inside_the_stated_window():
    """Attack 1: rewrite events after the last checkpoint, recompute their hashes and the head. Nothing signed
    covers them yet, so this is the window docs/audit.md states; verification names that window."""
    write(4)
    checkpoints.checkpoint()
    write(3)
    rewrite_from(6, after={"n": "forged"})
    result = chain.verify()
    assert result.ok and result.protected_seq == 4
    assert any(note.startswith("Events 5..7 are not covered by an anchored checkpoint yet") for note in result.notes)


def test_rewriting_events_a_checkpoint_covers_is_detected_and_never_signed():
    """Attack 1, reaching one event into the last checkpoint: the next beat refuses to sign the forgery."""
    write(4)
    checkpoints.checkpoint()
    write(3)
    rewrite_from(4, after={"n": "forged"})
    assert kinds(chain.verify()) == [("checkpoint-mismatch", 4), ("checkpoint-mismatch", 4)]
    with pytest.raises(checkpoints.CheckpointRefused, match="no longer has the hash checkpoint 1 signed"):
        checkpoints.checkpoint()
    assert Checkpoint.objects.count() == 1


def test_deleting_checkpoint_rows_then_rewriting_is_caught_by_the_anchor(anchor_file):
    """Attack 2: delete the checkpoints (no trigger protected their table), rewrite the events they covered
    with recomputed hashes, and let the next beat sign the forged head."""
    write(3)
    checkpoints.checkpoint()
    write(2)
    checkpoints.checkpoint()
    raw("DELETE FROM audit_checkpoint")
    rewrite_from(2, after={"n": "forged"})
    with pytest.raises(checkpoints.CheckpointRefused, match="anchor's latest checkpoint .2, seq 5. is missing"):
        checkpoints.checkpoint()
    result = chain.verify()
    assert kinds(result) == [
        ("checkpoint-missing", 3),
        ("checkpoint-missing", 5),
        ("checkpoint-mismatch", 3),
        ("checkpoint-mismatch", 5),
    ]
    assert "anchored checkpoint 1 (seq 3, signed " in result.problems[0].detail
    assert result.problems[2].detail.startswith("anchored checkpoint 1 recorded another hash here")


def test_deleting_the_latest_checkpoint_and_signing_a_rewrite_is_caught():
    """Attack 2, done carefully: delete only the latest checkpoint, rewrite the events after the one before,
    and sign a new checkpoint 2 through the portal: it differs from the anchored checkpoint 2."""
    write(3)
    checkpoints.checkpoint()
    write(2)
    checkpoints.checkpoint()
    raw("DELETE FROM audit_checkpoint WHERE number = 2")
    rewrite_from(4, after={"n": "forged"})
    assert chain.verify().problems[0].kind == "checkpoint-missing"
    with pytest.raises(checkpoints.CheckpointRefused):
        checkpoints.checkpoint()  # the portal refuses to sign it ...
    # ... so the attacker inserts their own checkpoint 2, without the key
    forged = {"number": 2, "seq": 5, "events": 5, "hash": by_seq(5).hash, "created_at": by_seq(5).occurred_at}
    forged["prev_signature"] = Checkpoint.objects.get(number=1).signature
    raw(
        (
            "INSERT INTO audit_checkpoint (number, seq, events, hash, created_at, prev_signature, signature) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [2, 5, 5, forged["hash"], forged["created_at"], forged["prev_signature"], "f" * 64],
        )
    )
    assert kinds(chain.verify()) == [("bad-signature", 5), ("checkpoint-rewritten", 5), ("checkpoint-mismatch", 5)]


def test_delete_from_audit_checkpoint_is_caught_by_the_anchor():
    """Attack 3: ``DELETE FROM audit_checkpoint``, the events left alone."""
    write(2)
    checkpoints.checkpoint()
    write(1)
    checkpoints.checkpoint()
    raw("DELETE FROM audit_checkpoint")
    result = chain.verify()
    assert kinds(result) == [("checkpoint-missing", 2), ("checkpoint-missing", 3)]
    assert "is missing from the database (deleted)" in str(result.problems[0])


def test_deleting_the_last_events_and_resetting_the_head_is_caught_by_the_anchored_checkpoint():
    """Attack 4: delete the last events and move the chain head back, so the chain itself looks whole; the
    attacker removes the database's checkpoint too. The anchored checkpoint still covers seq 5."""
    write(5)
    checkpoints.checkpoint()
    three = by_seq(3).hash
    raw(
        "DELETE FROM audit_auditevent WHERE seq > 3",
        ("UPDATE audit_chainhead SET seq = 3, hash = %s WHERE id = 1", [three]),
        "DELETE FROM audit_checkpoint",
    )
    result = chain.verify()
    assert kinds(result) == [("checkpoint-missing", 5), ("deleted-tail", 5)]
    assert "anchored checkpoint 1 covers position 5 (5 events) but the chain ends at 3 with 3" in str(
        result.problems[1]
    )


def test_truncating_the_log_and_writing_a_new_one_is_caught_by_the_anchor():
    """Attack 5: TRUNCATE the events and checkpoints, reset the head, and let the portal write a new log
    from seq 1 (each new event properly chained); the anchored checkpoint no longer matches."""
    write(4)
    checkpoints.checkpoint()
    raw(
        "TRUNCATE audit_auditevent, audit_checkpoint", f"UPDATE audit_chainhead SET seq = 0, hash = '{hashing.GENESIS}'"
    )
    assert kinds(chain.verify()) == [("checkpoint-missing", 4), ("deleted-tail", 4)]
    write(6, verb="thing.innocent")
    assert kinds(chain.verify()) == [("checkpoint-missing", 4), ("checkpoint-mismatch", 4)]
    with pytest.raises(checkpoints.CheckpointRefused):
        checkpoints.checkpoint()


def test_removing_a_middle_checkpoint_breaks_the_checkpoint_chain_even_without_an_anchor(settings):
    settings.PORTAL_AUDIT_ANCHOR = "off"
    for _ in range(3):
        write(1)
        checkpoints.checkpoint()
    raw("DELETE FROM audit_checkpoint WHERE number = 2")
    result = chain.verify()
    assert kinds(result) == [("checkpoint-chain", 3)]
    assert "checkpoint(s) 2..2 are missing from the database (deleted)" in result.problems[0].detail
    assert result.notes[0].startswith("No anchor: removing the latest checkpoints")


def test_a_head_left_behind_after_deleting_events_is_named():
    write(3)
    raw("DELETE FROM audit_auditevent WHERE seq = 3")
    assert kinds(chain.verify()) == [("head-mismatch", 3)]


def test_a_line_appended_to_the_anchor_without_the_key_is_reported(anchor_file):
    write(2)
    checkpoints.checkpoint()
    record = anchored(anchor_file)[0]
    with open(anchor_file, "a") as handle:
        handle.write(anchor.line_of({**record, "number": 2, "seq": 9, "signature": "0" * 64}) + "\n")
        handle.write("garbage portal-audit-checkpoint {\n")
    assert kinds(chain.verify()) == [("anchor-unreadable", None), ("anchor-bad-signature", 9)]


def test_a_checkpoint_that_could_not_be_anchored_is_pending_then_caught_up(settings, tmp_path):
    target = tmp_path / "not-mounted-yet" / "anchor.log"
    settings.PORTAL_AUDIT_ANCHOR = str(target)
    write(2)
    with pytest.raises(anchor.AnchorError, match="cannot append to the audit anchor"):
        checkpoints.checkpoint()
    assert Checkpoint.objects.count() == 1  # committed, signed, not anchored
    result = chain.verify()
    assert result.ok and result.anchored == 0
    assert "1 signed checkpoint(s) (1..1) are not in the anchor yet" in result.notes[0]
    target.parent.mkdir()
    assert checkpoints.checkpoint() is None  # nothing new to sign, but the anchor catches up
    assert chain.verify().anchored == 1


def test_syslog_anchor_is_compared_through_a_copy_from_the_log_host(settings, tmp_path, capsys):
    settings.PORTAL_AUDIT_ANCHOR = "syslog"
    write(2)
    made = checkpoints.checkpoint()
    result = chain.verify()
    assert result.ok and not result.anchor_compared
    assert "verify_audit --anchor FILE" in result.notes[0]
    copy = tmp_path / "from-loghost.log"
    line = anchor.line_of(checkpoints.anchored_record(made))
    copy.write_text(f"Dec  2 01:02:03 portal portal-audit[123]: {line}\nDec  2 01:02:04 portal sshd[9]: hello\n")
    call_command("verify_audit", "--anchor", str(copy))
    assert "1 of them in the anchor" in capsys.readouterr().out
    raw("DELETE FROM audit_checkpoint")
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_audit", "--anchor", str(copy))
    assert "checkpoint-missing at seq 2: anchored checkpoint 1" in capsys.readouterr().out


def test_orm_refuses_to_change_or_delete_a_checkpoint():
    write(1)
    made = checkpoints.checkpoint()
    made.hash = "0" * 64
    for attempt in (made.save, made.delete, Checkpoint.objects.all().delete, lambda: Checkpoint.objects.update(seq=0)):
        with pytest.raises(AppendOnlyError, match="append-only"):
            attempt()
    assert Checkpoint.objects.get().hash == by_seq(1).hash


@postgres_only
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_checkpoint SET hash = 'forged'",
        "DELETE FROM audit_checkpoint",
        "UPDATE audit_chainhead SET seq = seq - 1",
        "UPDATE audit_chainhead SET hash = 'forged'",
        "DELETE FROM audit_chainhead",
    ],
)
def test_postgresql_refuses_rewriting_checkpoints_and_moving_the_head_back(sql):
    write(2)
    checkpoints.checkpoint()
    with pytest.raises(DatabaseError, match="append-only|only moves forward"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql)
    assert chain.verify().ok
    assert ChainHead.objects.get().seq == 2 and AuditEvent.objects.count() == 2
