"""The cost budget of a full re-read: back off when one check costs more than the interval.

When a check's duration exceeds ``share`` of the configured interval, the next interval is extended
to ``duration / share`` (at most ``max_factor`` times the configured one) so verification never uses
more than that share of a core; it comes back to the configured interval once checks are cheap again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Budget:
    """Effective interval from the configured one and the last check's duration."""

    interval: float
    share: float = 0.5  # at most this fraction of wall time spent checking
    max_factor: float = 20.0
    effective: float = 0.0
    last_duration: float = 0.0

    def __post_init__(self) -> None:
        if self.interval <= 0 or not 0 < self.share <= 1:
            raise ValueError("interval must be > 0 and share in (0, 1]")
        self.effective = self.interval

    @property
    def min_gap(self) -> float:
        """The shortest pause after a check that keeps checking within the share, for extra checks
        (on API changes) between the interval's."""
        return self.last_duration * (1 / self.share - 1)

    @property
    def backing_off(self) -> bool:
        return self.effective > self.interval

    def after_check(self, duration: float) -> tuple[float, str | None]:
        """The next interval, and a log line when backing off starts, changes much, or ends."""
        self.last_duration = duration
        wanted = min(max(self.interval, duration / self.share), self.interval * self.max_factor)
        before = self.effective
        if before == self.interval and wanted < self.interval * 1.1:
            wanted = self.interval  # hysteresis: a check just over the share does not flap the interval
        self.effective = wanted
        if wanted > self.interval and (before == self.interval or abs(wanted - before) > 0.25 * before):
            return wanted, (f"a full re-read took {duration:.1f} s, more than {self.share:.0%} of the "
                            f"{self.interval:g} s interval: backing off to {wanted:.1f} s")
        if wanted == self.interval and before > self.interval:
            return wanted, (f"re-reads are cheap again ({duration:.1f} s): "
                            f"back to the {self.interval:g} s interval")
        return wanted, None
