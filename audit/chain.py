"""The tamper-evident hash chain over audit events: verification against the chain itself, its signed
checkpoints and the anchor outside the database.

Each event's ``hash`` is SHA-256 over its canonical JSON (sorted keys, fixed field set, UTC timestamps)
including the previous event's hash, like CloudTrail's digest chain. Verification walks the chain in
``seq`` order and reports every problem it finds (up to a limit), first to last: an edited event, a
broken link, a gap (deleted), a duplicate or out-of-order position (inserted or reordered), an event whose
hash or count differs from what a signed checkpoint recorded (rewritten with recomputed hashes), a head
row that is not the last event, checkpoints missing, rewritten, out of chain or badly signed, and
checkpoints the anchor holds that the database lost (docs/audit.md says what each one means).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from audit import anchor as anchors
from audit.checkpoints import anchored_record
from audit.hashing import CANONICAL_FIELDS, GENESIS, event_hash
from audit.models import AuditEvent, ChainHead, Checkpoint
from audit.signing import CHECKPOINT_FIELDS, checkpoint_signature_ok

#: What verification can report; docs/audit.md explains each.
KINDS = (
    "edited", "broken-link", "gap", "duplicate", "unchained", "head-mismatch", "deleted-tail", "count-mismatch",
    "checkpoint-mismatch", "bad-signature", "checkpoint-chain", "checkpoint-missing", "checkpoint-rewritten",
    "anchor-bad-signature", "anchor-unreadable",
)  # fmt: skip


@dataclass
class Problem:
    kind: str  # one of KINDS
    seq: int | None
    event_id: int | None
    detail: str

    def __str__(self) -> str:
        if self.event_id is None and self.seq is None:
            return f"{self.kind}: {self.detail}"
        where = f"event id {self.event_id} (seq {self.seq})" if self.event_id else f"seq {self.seq}"
        return f"{self.kind} at {where}: {self.detail}"


@dataclass
class Verification:
    events: int = 0
    checkpoints: int = 0
    head_seq: int = 0
    anchored: int = 0
    anchor: str = ""
    anchor_compared: bool = False
    #: The last position an anchored checkpoint covers (without a readable anchor: a signed one); events
    #: after it can still be rewritten undetected by someone who can write the database.
    protected_seq: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            anchored = (
                f"{self.anchored} of them in the anchor ({self.anchor}); events after seq {self.protected_seq} "
                "are not anchored yet"
                if self.anchor_compared
                else f"the anchor was not compared: {self.anchor}"
            )
            return (
                f"OK: {self.events} events chained up to seq {self.head_seq}, "
                f"{self.checkpoints} signed checkpoint(s) match, {anchored}."
            )
        return f"TAMPERED: first problem: {self.problems[0]} ({len(self.problems)} problem(s) found)"


@dataclass
class _Signed:
    """A signed statement about the chain at one position, from the database or the anchor."""

    label: str
    number: int
    seq: int
    events: int
    hash: str


def _check_database_checkpoints(checks: list[Checkpoint], problem) -> list[_Signed]:
    """Signatures and continuity of the checkpoints table; the well-signed ones, to hold the events to."""
    signed, prev_number, prev_signature = [], 0, GENESIS
    for check in checks:
        if not checkpoint_signature_ok(check, check.signature):
            problem("bad-signature", check.seq, None, f"checkpoint {check.number}'s signature is wrong (forged?)")
        else:
            signed.append(_Signed(f"checkpoint {check.number}", check.number, check.seq, check.events, check.hash))
        if check.number != prev_number + 1:
            problem(
                "checkpoint-chain",
                check.seq,
                None,
                f"checkpoint(s) {prev_number + 1}..{check.number - 1} are missing from the database (deleted)",
            )
        elif check.prev_signature != prev_signature:
            problem(
                "checkpoint-chain",
                check.seq,
                None,
                f"checkpoint {check.number} does not follow checkpoint {prev_number}",
            )
        prev_number, prev_signature = check.number, check.signature
    return signed


def _check_anchor(checks: list[Checkpoint], anchor, result: Verification, problem) -> list[_Signed]:
    """Compare the anchor's checkpoints with the database's: missing, rewritten, or not yet anchored."""
    if anchor is None:
        result.anchor = anchors.describe(None)
        result.notes.append(
            "No anchor: removing the latest checkpoints, or all of them, together with the events they "
            "cover goes unnoticed (set PORTAL_AUDIT_ANCHOR)."
        )
        return []
    result.anchor = anchor.source
    if not anchor.readable:
        result.notes.append(
            f"The anchor is {anchor.source}: give a copy of its lines from the log host (verify_audit --anchor "
            "FILE) to compare it with the database."
        )
        return []
    result.anchor_compared = True
    for where in anchor.unreadable:
        problem("anchor-unreadable", None, None, f"{where} of the anchor {anchor.source} is not a checkpoint record")
    by_number = {c.number: c for c in checks}
    signed = []
    for record in anchor.records:
        try:
            number, seq, events = int(record["number"]), int(record["seq"]), int(record["events"])
            good = checkpoint_signature_ok(record, record["signature"])
        except (KeyError, TypeError, ValueError):
            good = False
        if not good:
            problem(
                "anchor-bad-signature",
                record.get("seq"),
                None,
                f"the anchor's line for checkpoint {record.get('number')} is not signed with this deployment's key",
            )
            continue
        result.anchored += 1
        result.protected_seq = max(result.protected_seq, seq)
        signed.append(_Signed(f"anchored checkpoint {number}", number, seq, events, record["hash"]))
        mine = by_number.get(number)
        if mine is None:
            problem(
                "checkpoint-missing",
                seq,
                None,
                f"anchored checkpoint {number} (seq {seq}, signed {record['created_at']}) is missing from the "
                "database (deleted)",
            )
        elif any(str(anchored_record(mine)[name]) != str(record.get(name)) for name in CHECKPOINT_FIELDS):
            problem(
                "checkpoint-rewritten",
                seq,
                None,
                f"checkpoint {number} in the database differs from the anchored one (seq {mine.seq} vs {seq}, "
                f"hash {mine.hash[:12]}… vs {record['hash'][:12]}…): it was replaced",
            )
    last_anchored = max((s.number for s in signed), default=0)
    pending = [c for c in checks if c.number > last_anchored]
    if pending:
        result.notes.append(
            f"{len(pending)} signed checkpoint(s) ({pending[0].number}..{pending[-1].number}) are not in the anchor "
            "yet: the next checkpoint appends them."
        )
    return signed


def verify(*, anchor_path=None, limit_problems: int = 50) -> Verification:
    """Walk the whole chain with constant memory and report what does not add up: against itself, its
    signed checkpoints, and the anchor (``anchor_path``: a copy of it; default: the configured one)."""
    result = Verification()

    def problem(kind, seq, event_id, detail):
        if len(result.problems) < limit_problems:
            result.problems.append(Problem(kind, seq, event_id, detail))

    checks = list(Checkpoint.objects.order_by("number"))
    result.checkpoints = len(checks)
    signed = _check_database_checkpoints(checks, problem)
    anchored = _check_anchor(checks, anchors.read(anchor_path), result, problem)
    by_seq: dict[int, list[_Signed]] = defaultdict(list)
    for statement in signed + anchored:
        by_seq[statement.seq].append(statement)

    unchained = AuditEvent.objects.filter(seq__isnull=True).order_by("id").values_list("id", flat=True)[:1]
    for event_id in unchained:
        problem("unchained", None, event_id, "an event without a chain position was inserted around the portal")
    expected_seq, prev_hash, counted = 1, GENESIS, 0
    rows = AuditEvent.objects.filter(seq__isnull=False).order_by("seq").values("id", "hash", *CANONICAL_FIELDS)
    for row in rows.iterator(chunk_size=2000):
        counted += 1
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
        if event_hash(row) != row["hash"]:
            problem("edited", seq, row["id"], "its content no longer matches its hash")
        for statement in by_seq.get(seq, ()):
            if statement.hash != row["hash"]:
                problem(
                    "checkpoint-mismatch",
                    seq,
                    row["id"],
                    f"{statement.label} recorded another hash here (history was rewritten, hashes recomputed)",
                )
            elif statement.events != counted:
                problem(
                    "count-mismatch",
                    seq,
                    row["id"],
                    f"{statement.label} counted {statement.events} events up to here, the table holds {counted}",
                )
        expected_seq, prev_hash = seq + 1, row["hash"]
    result.events, result.head_seq = counted, expected_seq - 1
    _check_tail(result, signed + anchored, prev_hash, problem)
    return result


def _check_tail(result: Verification, signed: list[_Signed], last_hash: str, problem) -> None:
    """The end of the chain: the head row names the last event, and no signed checkpoint lies beyond it."""
    for statement in sorted(signed, key=lambda s: -s.seq):
        if statement.seq > result.head_seq:
            problem(
                "deleted-tail",
                statement.seq,
                None,
                f"{statement.label} covers position {statement.seq} ({statement.events} events) but the chain ends "
                f"at {result.head_seq} with {result.events}: events were deleted at the end (or the table emptied)",
            )
    head = ChainHead.objects.filter(pk=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if (head_seq, head_hash) != (result.head_seq, last_hash):
        problem(
            "head-mismatch",
            head_seq,
            None,
            f"the chain head row says seq {head_seq}, the last event is seq {result.head_seq}"
            + (" (its hash differs too)" if head_seq == result.head_seq else ""),
        )
    if result.anchor_compared and result.head_seq > result.protected_seq:
        result.notes.append(
            f"Events {result.protected_seq + 1}..{result.head_seq} are not covered by an anchored checkpoint yet: "
            "until the next one, someone who can write the database can rewrite or remove them undetected."
        )


#: The most events the event page walks from an event to the checkpoint that covers it; further, it
#: says so and points to the whole verification.
WALK_LIMIT = 20_000


@dataclass
class EventState:
    """What can be said about one event's place in the chain, without walking all of it."""

    recomputed: str
    hash_ok: bool
    #: The event at seq - 1 (None for the first, or when missing) and whether this one links to it.
    previous: AuditEvent | None
    links_previous: bool
    #: The event at seq + 1 (None at the head, or when missing) and whether it links to this one.
    next: AuditEvent | None
    links_next: bool | None
    #: The first checkpoint at or after this event, whether its signature is this deployment's, and
    #: whether the events from here to it link up to the hash it signed (None: too far to walk here).
    checkpoint: Checkpoint | None = None
    checkpoint_signed: bool = False
    covered: bool | None = None
    walked: int = 0
    #: Whether that checkpoint is in the anchor (None: no anchor, or one that cannot be read back).
    anchored: bool | None = None
    anchor: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def inspect_event(event: AuditEvent, *, walk_limit: int = WALK_LIMIT, anchor_path=None) -> EventState:
    """``event``'s hash recomputed, its links to its neighbours, and whether a signed checkpoint covers it
    (the events from it to the checkpoint are walked, up to ``walk_limit``)."""
    recomputed = event_hash({name: getattr(event, name) for name in CANONICAL_FIELDS})
    neighbours = {e.seq: e for e in AuditEvent.objects.filter(seq__in=[event.seq - 1, event.seq + 1])}
    previous, following = neighbours.get(event.seq - 1), neighbours.get(event.seq + 1)
    expected_prev = previous.hash if previous else GENESIS
    state = EventState(
        recomputed=recomputed,
        hash_ok=recomputed == event.hash,
        previous=previous,
        links_previous=event.prev_hash == expected_prev and (previous is not None or event.seq == 1),
        next=following,
        links_next=None if following is None else following.prev_hash == event.hash,
    )
    if not state.hash_ok:
        state.problems.append("its content no longer matches its hash (it was edited)")
    if not state.links_previous:
        state.problems.append(
            f"position {event.seq - 1} is missing"
            if previous is None and event.seq > 1
            else "its prev_hash is not the previous event's hash"
        )
    if state.links_next is False:
        state.problems.append("the next event does not link to this one")
    _check_coverage(event, state, walk_limit, anchor_path)
    return state


def _check_coverage(event: AuditEvent, state: EventState, walk_limit: int, anchor_path) -> None:
    check = Checkpoint.objects.filter(seq__gte=event.seq).order_by("number").first()
    state.checkpoint = check
    if check is None:
        return
    state.checkpoint_signed = checkpoint_signature_ok(check, check.signature)
    if not state.checkpoint_signed:
        state.problems.append(f"checkpoint {check.number}'s signature is wrong (forged?)")
    if check.seq - event.seq <= walk_limit:
        expected, prev = event.seq, event.prev_hash
        rows = AuditEvent.objects.filter(seq__gte=event.seq, seq__lte=check.seq).order_by("seq")
        for row in rows.values("hash", *CANONICAL_FIELDS).iterator(chunk_size=2000):
            if row["seq"] != expected or row["prev_hash"] != prev or event_hash(row) != row["hash"]:
                break
            expected, prev, state.walked = expected + 1, row["hash"], state.walked + 1
        state.covered = expected == check.seq + 1 and prev == check.hash
        if not state.covered:
            state.problems.append(
                f"the events from here to checkpoint {check.number} (seq {check.seq}) do not link up to the hash it "
                f"signed (broken at seq {expected})"
            )
    anchor = anchors.read(anchor_path)
    state.anchor = anchors.describe(None) if anchor is None else anchor.source
    if anchor is not None and anchor.readable:
        state.anchored = any(
            str(r.get("number")) == str(check.number) and r.get("signature") == check.signature for r in anchor.records
        )
