"""Walking the audit chain on demand, for the verification page and API (audited by ``audit``)."""

from __future__ import annotations

from audit import services as audit


def verify_and_record(user) -> dict:
    result = audit.verify_chain(actor=user, via="verification page/API")
    return {
        "ok": result.ok,
        "events": result.events,
        "head_seq": result.head_seq,
        "checkpoints": result.checkpoints,
        "anchored": result.anchored,
        "anchor": result.anchor,
        "protected_seq": result.protected_seq,
        "summary": result.summary(),
        "notes": result.notes,
        "problems": [
            {"kind": p.kind, "seq": p.seq, "event_id": p.event_id, "detail": p.detail} for p in result.problems
        ],
    }
