"""vGPU profile ladders: which profiles a board offers, and which one a share request gets.

The portal passes its catalog's ladders; boards it does not name (and every board of the openb
traces) use the traces' README ladders built here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MILLI = 1000  # one whole GPU, in milli-GPU

# Framebuffer (GiB) and equal-size profile sizes (GiB) per board model (README of the traces).
FRAMEBUFFER_GIB = {
    "P100": 16,
    "T4": 16,
    "V100M16": 16,
    "G2": 16,
    "G3": 16,
    "V100M32": 32,
    "A10": 24,
}
PROFILE_SIZES_GIB = {
    "P100": (1, 2, 4, 8, 16),
    "T4": (1, 2, 4, 8, 16),
    "V100M16": (1, 2, 4, 8, 16),
    "G2": (1, 2, 4, 8, 16),
    "G3": (1, 2, 4, 8, 16),
    "V100M32": (1, 2, 4, 8, 16, 32),
    "A10": (1, 2, 3, 4, 6, 8, 12, 24),
}
DEFAULT_FRAMEBUFFER_GIB = 16
DEFAULT_PROFILE_SIZES_GIB = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class ProfileSpec:
    """One vGPU profile of a board: ``key`` > 0 identifies it on the board (equal-size mode: a GPU
    runs one key at a time), ``size`` is its framebuffer in the ladder's unit."""

    key: int
    name: str
    size: int
    max_instances: int
    series: str = "Q"


class Ladder:
    """The profiles one board model offers, and which of them a request gets: the smallest profile
    of the request's series whose framebuffer is at least the requested share of the board (or at
    least an absolute framebuffer, for requests that name one)."""

    def __init__(self, model: str, framebuffer: int, profiles: Iterable[ProfileSpec]):
        self.model = model
        self.fb = framebuffer
        profiles = list(profiles)
        if any(p.key <= 0 for p in profiles) or len({p.key for p in profiles}) != len(profiles):
            raise ValueError(f"{model}: profile keys must be distinct and positive")
        self.size = {p.key: p.size for p in profiles}
        self.maxi = {p.key: p.max_instances for p in profiles}
        self.name = {p.key: p.name for p in profiles}
        self.by_series: dict[str, list[tuple[int, int]]] = {}
        for p in profiles:
            self.by_series.setdefault(p.series, []).append((p.size, p.key))
        for sizes_and_keys in self.by_series.values():
            sizes_and_keys.sort()
        self._choice: dict = {}

    def choose(self, gpu_milli: int, series: str = "Q", framebuffer: int = 0, profile: int = 0) -> int | None:
        """Key of the profile a share request gets on this board, None when the series has none big enough
        (a request naming a ``profile`` key gets that one, None on boards without it)."""
        if profile:
            return profile if profile in self.size else None
        cache_key = (gpu_milli, series, framebuffer)
        if cache_key in self._choice:
            return self._choice[cache_key]
        chosen = None
        for size, key in self.by_series.get(series, ()):
            if (size >= framebuffer) if framebuffer else (size * MILLI >= gpu_milli * self.fb):
                chosen = key
                break
        self._choice[cache_key] = chosen
        return chosen

    def free_milli(self, key: int, used: int) -> int:
        """Board capacity (milli) still free on a GPU running ``key`` with ``used`` instances."""
        return (self.maxi[key] - used) * self.size[key] * MILLI // self.fb

    def unit_milli(self, key: int) -> int:
        return self.size[key] * MILLI // self.fb


def trace_ladder(model: str) -> Ladder:
    """The traces' README ladders: Q-series sizes in GiB, framebuffer/size instances each."""
    framebuffer = FRAMEBUFFER_GIB.get(model, DEFAULT_FRAMEBUFFER_GIB)
    sizes = PROFILE_SIZES_GIB.get(model, DEFAULT_PROFILE_SIZES_GIB)
    return Ladder(model, framebuffer, (ProfileSpec(s, f"{model}-{s}Q", s, framebuffer // s) for s in sizes))


_TRACE_LADDERS: dict[str, Ladder] = {}


def ladder_for(model: str, ladders: dict | None = None) -> Ladder:
    """``model``'s ladder from ``ladders`` (the catalog's), else the traces' (built once)."""
    if ladders and model in ladders:
        return ladders[model]
    ladder = _TRACE_LADDERS.get(model)
    if ladder is None:
        ladder = _TRACE_LADDERS[model] = trace_ladder(model)
    return ladder
