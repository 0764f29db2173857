"""Signing the chain's head: one checkpoint at a time, chained to the previous one, anchored outside the
database before it commits.

A checkpoint is only signed when what it would bless still holds together: the anchor's latest
checkpoint is in the database unchanged (none was removed or replaced), and every event since it links up
from it. So a forger who rewrites events covered by a checkpoint, or removes checkpoints to hide that,
gets no new signature; verification says why (``audit.chain.verify``).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from audit import anchor
from audit.hashing import CANONICAL_FIELDS, GENESIS, event_hash
from audit.models import AuditEvent, ChainHead, Checkpoint
from audit.signing import CHECKPOINT_FIELDS, checkpoint_record, checkpoint_signature_ok, sign_checkpoint


class CheckpointRefused(Exception):
    """The head cannot be signed: what it would bless does not hold together (the message says what)."""


def anchored_record(check: Checkpoint) -> dict:
    """A checkpoint as its anchor line holds it: the signed fields and the signature."""
    return {**checkpoint_record(check), "signature": check.signature}


def _same(check: Checkpoint, record: dict) -> bool:
    mine = anchored_record(check)
    return all(str(mine[name]) == str(record.get(name)) for name in (*CHECKPOINT_FIELDS, "signature"))


def _refuse_unless_it_holds(last: Checkpoint | None, head: ChainHead) -> None:
    anchored = anchor.last_record()
    if anchored is not None:
        same = Checkpoint.objects.filter(number=anchored.get("number")).first()
        if same is None or not _same(same, anchored):
            raise CheckpointRefused(
                f"the anchor's latest checkpoint ({anchored.get('number')}, seq {anchored.get('seq')}) is "
                "missing from the database or differs there: checkpoints were removed or replaced (run verify_audit)"
            )
    # Walks only the events since the last checkpoint (ten minutes' worth), under the head's lock; the
    # very first checkpoint walks the whole chain once.
    expected, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    rows = AuditEvent.objects.filter(seq__gte=expected, seq__lte=head.seq).order_by("seq")
    if last is not None and not AuditEvent.objects.filter(seq=last.seq, hash=last.hash).exists():
        raise CheckpointRefused(f"the event at seq {last.seq} no longer has the hash checkpoint {last.number} signed")
    for row in rows.values("id", "hash", *CANONICAL_FIELDS).iterator(chunk_size=2000):
        if row["seq"] != expected or row["prev_hash"] != prev or event_hash(row) != row["hash"]:
            raise CheckpointRefused(
                f"the chain does not hold together at seq {expected} (event id {row['id']}): run verify_audit"
            )
        expected, prev = expected + 1, row["hash"]
    if expected != head.seq + 1 or prev != head.hash:
        raise CheckpointRefused(f"the chain head (seq {head.seq}) is not the last event (seq {expected - 1})")


def checkpoint() -> Checkpoint | None:
    """Sign the current head as the next checkpoint and anchor it (None: nothing new since the last one).

    The chain head's row lock keeps writers out while the checkpoint is made, so the head, the count
    and the events it covers are one state. The anchor line is written after the transaction commits
    (run it outside one), so the anchor never holds a checkpoint the database lacks; one committed but not
    anchored (a crash in between, the anchor unwritable: AnchorError) is anchored by the next call, and
    until then verification lists it as pending."""
    made = None
    with transaction.atomic():
        head = ChainHead.objects.select_for_update().filter(pk=1).first()
        last = Checkpoint.objects.order_by("-number").first()
        if head is not None and head.seq > 0 and (last is None or last.seq != head.seq):
            made = _sign_next(last, head)
    anchor_pending(made)
    return made


def _sign_next(last: Checkpoint | None, head: ChainHead) -> Checkpoint:
    _refuse_unless_it_holds(last, head)
    made = Checkpoint(
        number=last.number + 1 if last else 1,
        seq=head.seq,
        events=AuditEvent.objects.filter(seq__isnull=False, seq__lte=head.seq).count(),
        hash=head.hash,
        created_at=timezone.now(),
        prev_signature=last.signature if last else GENESIS,
    )
    made.signature = sign_checkpoint(made)
    made.save(force_insert=True)
    return made


def anchor_pending(made: Checkpoint | None = None) -> int:
    """Append to the anchor every signed checkpoint it does not hold yet, in order, each chained to the one
    before (after a crash between commit and anchoring, the next checkpoint catches up; an anchor started
    late starts at checkpoint 1). Syslog cannot be read back: only ``made`` goes there. Returns how many."""
    where = anchor.destination()
    if where is None:
        return 0
    if where == anchor.SYSLOG:
        if made is not None:
            anchor.append(anchored_record(made))
        return int(made is not None)
    last = anchor.last_record()
    written = 0
    prev_number, prev_signature = (int(last["number"]), last["signature"]) if last else (0, GENESIS)
    for check in Checkpoint.objects.filter(number__gt=prev_number).order_by("number").iterator():
        if check.number != prev_number + 1 or check.prev_signature != prev_signature:
            raise CheckpointRefused(f"checkpoint {check.number} does not follow the anchor's latest: run verify_audit")
        if not checkpoint_signature_ok(check, check.signature):
            raise CheckpointRefused(f"checkpoint {check.number}'s signature is wrong: run verify_audit")
        anchor.append(anchored_record(check))
        prev_number, prev_signature, written = check.number, check.signature, written + 1
    return written
