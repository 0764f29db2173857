"""The policy's choice for many templates at once, claiming nothing: the New-desktop page asks about every
template a tenant is offered (151 for the trace's shapes) on one reading of the database, instead of
one refresh (and its queries) per template."""

from __future__ import annotations

from allocations.placement import fleet as placement
from allocations.placement.shapes import shape_of


def place_each(templates) -> list:
    """``placement.place`` for each of ``templates``, in order: a ``Choice``, or the ``NoPlacement`` saying
    why not. The fleet is brought up to date once, and what a refusal reads (which online boards cannot
    go whole) is read once for the batch."""
    f = placement.fleet()
    requests = [shape_of(t, f.vcpu_milli) for t in templates]
    with f._lock:
        try:
            f.refresh(full=any(r.profile and r.profile not in f.profiles for r in requests))
        except BaseException:
            f._structure = None  # half-applied: the next decision reads everything again
            raise
        out = []
        f.blocked_memo = {}
        try:
            for request in requests:
                try:
                    out.append(f._choice(request))
                except placement.NoPlacement as exc:
                    out.append(exc)
        finally:
            f.blocked_memo = None
        return out
