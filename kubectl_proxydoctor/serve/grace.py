"""Drift reporting with a grace period and flap damping (pure: the caller passes the time).

A drift (a service port in one family drifting one way) is *reported* only once it has been seen for
``grace`` seconds, and not while kube-proxy has a sync in progress (its last queued change is newer
than its last sync): kube-proxy is then expected to fix it. A drift that disappears is forgotten only
after it stayed away for ``hold`` seconds, so one that flaps (seen, gone, seen) keeps its first-seen
time and is reported once it has existed, on and off, for the grace period; a reported drift ends
only after it stayed away for ``hold`` seconds, so a flapping one does not start and end every check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")


@dataclass
class Track:
    """What is known about one drift key."""

    first_seen: float
    last_seen: float
    reported_since: float | None = None


@dataclass
class Transitions(Generic[K]):
    """What changed at one update: drifts that started and ended being reported."""

    started: list[K] = field(default_factory=list)
    ended: list[K] = field(default_factory=list)


class DriftTracker(Generic[K]):
    """Turns a sequence of observed drift sets into reported drifts (see module doc)."""

    def __init__(self, grace: float, hold: float | None = None) -> None:
        if grace < 0 or (hold is not None and hold < 0):
            raise ValueError("grace and hold must be >= 0")
        self.grace = grace
        self.hold = grace if hold is None else hold
        self.tracks: dict[K, Track] = {}

    def update(self, observed: set[K], now: float, sync_in_progress: bool = False) -> Transitions[K]:
        """Record the drifts observed at ``now``; return the reporting transitions."""
        out: Transitions[K] = Transitions()
        for key in observed:
            track = self.tracks.get(key)
            if track is None:
                self.tracks[key] = track = Track(first_seen=now, last_seen=now)
            track.last_seen = now
        for key, track in list(self.tracks.items()):
            present = key in observed
            if track.reported_since is None:
                if present and now - track.first_seen >= self.grace and not sync_in_progress:
                    track.reported_since = now
                    out.started.append(key)
                elif not present and now - track.last_seen >= self.hold:
                    del self.tracks[key]
            elif not present and now - track.last_seen >= self.hold:
                del self.tracks[key]
                out.ended.append(key)
        out.started.sort()
        out.ended.sort()
        return out

    @property
    def reported(self) -> set[K]:
        """Drifts reported now."""
        return {k for k, t in self.tracks.items() if t.reported_since is not None}

    @property
    def pending(self) -> set[K]:
        """Drifts seen but not (yet) reported: within the grace period or postponed by a sync."""
        return {k for k, t in self.tracks.items() if t.reported_since is None}
