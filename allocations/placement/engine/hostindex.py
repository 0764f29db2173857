"""Candidate-host indexes for "ours": per request shape, the hosts ordered by their score, kept up to
date from the cluster's change log (``Cluster.changes_since``) instead of scoring every host per
decision.

A host's score for a request shape depends only on its own state (and, for fractional shares, on
the cluster's gap counts, which are the same for every host with the same gap), so a shape's index
recomputes only the hosts whose state changed since it was last asked, and keeps the others'
entries. Entries are tuples ordered exactly as the full scan orders hosts (score, then the tie key),
ending with the node index; a heap with lazy deletion yields the best current one.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush


class LazyHeap:
    """A min-heap of entry tuples (last element: the node index) with one current entry per node;
    replaced and removed entries are dropped when they reach the top."""

    __slots__ = ("current", "heap")

    def __init__(self):
        self.heap: list = []
        self.current: dict = {}  # node -> its current entry

    def set(self, i: int, entry) -> None:
        if entry is None:
            self.current.pop(i, None)
            return
        self.current[i] = entry
        heappush(self.heap, entry)
        if len(self.heap) > 2 * len(self.current) + 64:
            self.heap = list(self.current.values())
            heapify(self.heap)

    def reset(self, current: dict) -> None:
        """Every node's entry at once (nodes not in ``current`` have none)."""
        self.current = current
        self.heap = list(current.values())
        heapify(self.heap)

    def top(self):
        """The least current entry, None when there is none."""
        heap, current = self.heap, self.current
        while heap:
            entry = heap[0]
            if current.get(entry[-1]) is entry:
                return entry
            heappop(heap)
        return None


class ShapeIndex:
    """One request shape's hosts: ``pos`` is the change-log position it is up to date with (-1: never
    built); ``heap`` the hosts' entries (whole requests and vgpu shares), or ``by_gap`` one heap per
    gap size with ``gaps_of`` the gap sizes each host is listed under (fractional shares)."""

    __slots__ = ("by_gap", "gaps_of", "heap", "pos")

    def __init__(self):
        self.pos = -1
        self.heap = LazyHeap()
        self.by_gap: dict[int, LazyHeap] = {}
        self.gaps_of: dict[int, tuple] = {}

    def reset_gaps(self, entries_of: dict) -> None:
        """Every node's entries per gap size at once (node -> {gap: entry}; nodes not in it have none)."""
        per_gap: dict[int, dict] = {}
        for i, entries in entries_of.items():
            for gap, entry in entries.items():
                per_gap.setdefault(gap, {})[i] = entry
        self.by_gap = {}
        for gap, current in per_gap.items():
            heap = self.by_gap[gap] = LazyHeap()
            heap.reset(current)
        self.gaps_of = {i: tuple(entries) for i, entries in entries_of.items() if entries}

    def set_gaps(self, i: int, entries: dict) -> None:
        """Node i's entries per gap size (empty: it takes no part)."""
        by_gap = self.by_gap
        for gap in self.gaps_of.get(i, ()):
            if gap not in entries:
                heap = by_gap[gap]
                heap.set(i, None)
                if not heap.current:
                    del by_gap[gap]
        for gap, entry in entries.items():
            heap = by_gap.get(gap)
            if heap is None:
                heap = by_gap[gap] = LazyHeap()
            heap.set(i, entry)
        if entries:
            self.gaps_of[i] = tuple(entries)
        else:
            self.gaps_of.pop(i, None)


class HostIndex:
    """Every shape's ``ShapeIndex`` for one cluster; ``stale(index)`` says which hosts to recompute."""

    MAX_SHAPES = 400  # shapes kept at once (each holds an entry per host); more and all start over

    def __init__(self, cluster):
        self.c = cluster
        self.shapes: dict = {}
        self.tie_rank = cluster.tie_rank

    def get(self, key) -> ShapeIndex:
        c = self.c
        if c.tie_rank is not self.tie_rank or len(self.shapes) > self.MAX_SHAPES:
            self.shapes.clear()  # the tie order changed (``spread_ties``): every entry's tie key did
            self.tie_rank = c.tie_rank
        index = self.shapes.get(key)
        if index is None:
            index = self.shapes[key] = ShapeIndex()
        return index

    def stale(self, index: ShapeIndex, models) -> tuple[object, bool]:
        """(the hosts allowed by ``models`` whose state may have changed since ``index`` was last brought up
        to date, whether that is all of them: the index is to be rebuilt), and marks it up to date."""
        c = self.c
        changed, index.pos = c.changes_since(index.pos)
        if changed is None:
            return c.candidates(models), True
        nodes = set(changed)
        if models is not None:
            gmodel = c.gmodel
            return [i for i in nodes if gmodel[i] in models], False
        return nodes, False
