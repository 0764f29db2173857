"""The tamper-evident hash chain over audit events, its signed checkpoints, and verification.

Each event's ``hash`` is SHA-256 over its canonical JSON (sorted keys, fixed field set,
UTC timestamps) including the previous event's hash, like CloudTrail's digest chain.
Verification walks the chain in ``seq`` order and reports the first problem: an edited
event (hash mismatch), a broken link (prev_hash), a gap (missing position: deleted), a
duplicate or out-of-order position (inserted or reordered), or a checkpoint that no
longer matches or whose signature is wrong.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.hashing import CANONICAL_FIELDS, GENESIS, event_hash, when
from audit.models import AuditEvent, ChainHead, Checkpoint


def _key() -> bytes:
    return settings.AUDIT_CHECKPOINT_KEY.encode()


def sign(seq: int, hash_: str, created_at: datetime) -> str:
    message = f"{seq}:{hash_}:{when(created_at)}".encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


def checkpoint() -> Checkpoint | None:
    """Record and sign the current head (nothing new since the last checkpoint: nothing to do)."""
    with transaction.atomic():
        head = ChainHead.objects.select_for_update().filter(pk=1).first()
        if head is None or head.seq == 0:
            return None
        last = Checkpoint.objects.order_by("-seq").first()
        if last is not None and last.seq == head.seq:
            return None
        now = timezone.now()
        return Checkpoint.objects.create(
            seq=head.seq, hash=head.hash, created_at=now, signature=sign(head.seq, head.hash, now)
        )


@dataclass
class Problem:
    kind: str  # edited | broken-link | gap | duplicate | unchained | checkpoint-mismatch | bad-signature
    seq: int | None
    event_id: int | None
    detail: str

    def __str__(self) -> str:
        where = f"event id {self.event_id} (seq {self.seq})" if self.event_id else f"seq {self.seq}"
        return f"{self.kind} at {where}: {self.detail}"


@dataclass
class Verification:
    events: int = 0
    checkpoints: int = 0
    head_seq: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (
                f"OK: {self.events} events chained up to seq {self.head_seq}, "
                f"{self.checkpoints} signed checkpoint(s) match."
            )
        return f"TAMPERED: first problem: {self.problems[0]} ({len(self.problems)} problem(s) found)"


def verify(*, limit_problems: int = 20) -> Verification:
    """Walk the whole chain with constant memory and report what does not add up."""
    result = Verification()
    checkpoints = {c.seq: c for c in Checkpoint.objects.all()}
    result.checkpoints = len(checkpoints)

    def problem(kind, seq, event_id, detail):
        if len(result.problems) < limit_problems:
            result.problems.append(Problem(kind, seq, event_id, detail))

    unchained = AuditEvent.objects.filter(seq__isnull=True).order_by("id").values_list("id", flat=True)[:1]
    for event_id in unchained:
        problem("unchained", None, event_id, "an event without a chain position was inserted around the portal")
    expected_seq, prev_hash = 1, GENESIS
    rows = AuditEvent.objects.filter(seq__isnull=False).order_by("seq").values("id", "hash", *CANONICAL_FIELDS)
    for row in rows.iterator(chunk_size=2000):
        result.events += 1
        seq = row["seq"]
        if seq < expected_seq:
            problem("duplicate", seq, row["id"], f"position {seq} appears twice or out of order")
            continue
        if seq > expected_seq:
            problem(
                "gap",
                expected_seq,
                None,
                f"events at positions {expected_seq}..{seq - 1} are missing (deleted?); next is id {row['id']}",
            )
        if row["prev_hash"] != prev_hash:
            problem(
                "broken-link",
                seq,
                row["id"],
                "prev_hash does not match the previous event's hash (an event was removed, inserted or moved)",
            )
        recomputed = event_hash(row)
        if recomputed != row["hash"]:
            problem("edited", seq, row["id"], "its content no longer matches its hash")
        check = checkpoints.get(seq)
        if check is not None and check.hash != row["hash"]:
            problem(
                "checkpoint-mismatch",
                seq,
                row["id"],
                f"signed checkpoint of {check.created_at:%Y-%m-%d %H:%M}"
                " recorded another hash here (history was rewritten)",
            )
        expected_seq, prev_hash = seq + 1, row["hash"]
    result.head_seq = expected_seq - 1
    for check in checkpoints.values():
        if not hmac.compare_digest(check.signature, sign(check.seq, check.hash, check.created_at)):
            problem("bad-signature", check.seq, None, "a checkpoint's signature is wrong (forged or wrong key)")
        if check.seq > result.head_seq:
            problem(
                "gap",
                check.seq,
                None,
                f"a signed checkpoint covers position {check.seq} but the chain ends at "
                f"{result.head_seq} (events were deleted at the end)",
            )
    return result
