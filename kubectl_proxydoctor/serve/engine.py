"""The serve loop: check the node, keep the verdict, drifts, latencies and metrics current.

One check = read the API view (a watch cache, a full read, or the capture's api.json), read the node's
rules, run the project's analysis (``analysis.analyse``, the same as `check`), summarise it
(``verdict``), then feed the grace tracker, the latency tracker, the metrics and the Event sink.
Time comes from injected clocks so tests can drive it without sleeping.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.serve.budget import Budget
from kubectl_proxydoctor.serve.grace import DriftTracker, Transitions
from kubectl_proxydoctor.serve.latency import NODE_KEY, LatencyTracker, Result
from kubectl_proxydoctor.serve.metrics import ServeMetrics
from kubectl_proxydoctor.serve.sources import ApiSource, CaptureDir, NodeSource, PolledApi
from kubectl_proxydoctor.serve.verdict import DriftKey, Verdict, programming_delta, summarise, sync_state


def release_memory() -> None:
    """After a full read: free the analysis's cycles and give freed heap back to the system (a
    long-running process otherwise keeps its peak; ~3 ms at 1,000 services)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@dataclass
class Options:
    interval: float = 30.0
    grace: float = 60.0
    hold: float | None = None  # how long a drift must stay away to end (default: grace)
    sync_wait: float = 60.0  # a queued kube-proxy change younger than this postpones drift
    latency_timeout: float = 120.0
    latency_poll: float = 1.0  # re-check cadence while an API change waits to be programmed
    full_resync: float = 300.0  # re-read the node at least this often even when nothing changed
    node_name: str | None = None


@dataclass
class CheckOutcome:
    """One check's result (None verdict when a source could not be read at all)."""

    verdict: Verdict | None
    transitions: Transitions[DriftKey] = field(default_factory=Transitions)
    latencies: list[Result] = field(default_factory=list)
    error: str | None = None
    duration: float = 0.0


class Engine:
    """The verification state of one node; ``check()`` runs one round, ``run()`` loops."""

    def __init__(self, node: NodeSource, api: ApiSource | None, options: Options,
                 metrics: ServeMetrics | None = None, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, log: Callable[[str], None] | None = None,
                 on_transitions: Callable[[Transitions[DriftKey], Verdict], None] | None = None,
                 on_check: Callable[[CheckOutcome], None] | None = None) -> None:
        self.node = node
        self.api = api
        self.options = options
        self.metrics = metrics or ServeMetrics()
        self.clock = clock
        self.wall = wall
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.on_transitions = on_transitions
        self.on_check = on_check
        self.tracker: DriftTracker[DriftKey] = DriftTracker(options.grace, options.hold)
        self.latency = LatencyTracker(options.latency_timeout)
        self.budget = Budget(options.interval)
        self.verdict: Verdict | None = None
        self.last_error: str | None = None
        self.polled_api = isinstance(api, PolledApi)  # no watch: the API is re-read at every tick
        self.last_success: float | None = None  # monotonic
        self.wake = threading.Event()  # set by the API watch on a change
        self._signatures: dict[str, tuple] = {}
        self._seq = 0  # the API change sequence the verdict includes
        self.recent: collections.deque[dict] = collections.deque(maxlen=20)  # latest latencies
        self.last_full = float("-inf")  # when the node was last read in full
        self._read_sync_age: float | None = None  # kube-proxy's queued-change age at that read
        self._lock = threading.Lock()
        self.metrics.interval.set(options.interval)

    # -- API changes (called from the watch thread) ----------------------------------------------

    def api_changed(self, key: str, seq: int, what: str) -> None:
        """An API change that may affect this node (``key``: service ``ns/name`` or the node)."""
        with self._lock:
            self.latency.record(key, self.clock(), seq, what)
        self.wake.set()

    # -- one check --------------------------------------------------------------------------------

    def check(self) -> CheckOutcome:
        from kubectl_proxydoctor.analysis import analyse

        started = self.clock()
        seq = 0
        try:
            cluster = None
            if self.api is not None:
                try:
                    cluster, seq = self.api.current()
                except ProxyDoctorError:
                    self.metrics.source_errors.labels("api").inc()
                    raise
            read_start = self.clock()
            try:
                snapshot = self.node.read()
                read_end = self.clock()
                # the rules were read somewhere in [start, end]; with a generation that did not move
                # during the read, they were this way throughout it
                rules_at = (read_end, read_start) if self.node.last_read_stable else (read_start, read_end)
                if self.api is None and isinstance(self.node, CaptureDir):
                    cluster = self.node.cluster(snapshot)
            except ProxyDoctorError:
                self.metrics.source_errors.labels("node").inc()
                raise
            report = analyse(snapshot, cluster, self.options.node_name)
        except ProxyDoctorError as e:
            return self._failed(str(e), started)
        except Exception as e:  # noqa: BLE001 - a daemon keeps verifying; the failure is reported
            self.metrics.source_errors.labels("internal").inc()
            return self._failed(f"internal error: {type(e).__name__}: {e}", started)
        verdict = summarise(report, self.options.sync_wait)
        del report, snapshot, cluster
        release_memory()
        for source in verdict.unreadable:
            self.metrics.source_errors.labels(source).inc()
        return self._record(verdict, started, rules_at, seq)

    def _failed(self, error: str, started: float) -> CheckOutcome:
        duration = self.clock() - started
        self.metrics.duration.observe(duration)
        self.metrics.unknown.set(1)
        if error != self.last_error:
            self.log(f"check failed: {error}")
        self.last_error = error
        outcome = CheckOutcome(None, error=error, duration=duration)
        if self.on_check:
            self.on_check(outcome)
        return outcome

    def _record(self, verdict: Verdict, started: float, rules_at: float | tuple[float, float], seq: int,
                *, reread: bool = True) -> CheckOutcome:
        now = self.clock()
        duration = now - started
        if reread:
            self.metrics.duration.observe(duration)
        outcome = CheckOutcome(verdict, duration=duration)
        if self.last_error is not None:
            self.log("check succeeds again")
            self.last_error = None
        self.metrics.set_findings(verdict.findings)
        self.metrics.sync_in_progress.set(1 if verdict.sync_in_progress else 0)
        if reread and (self.verdict is None or verdict.summary != self.verdict.summary):
            self.log(f"verdict {verdict.summary}")
        if not verdict.known:  # unknown is not clean: drift state is kept, not cleared
            self.metrics.unknown.set(1)
        else:
            self.metrics.unknown.set(0)
            self.metrics.last_success.set(self.wall())
            self.last_success = now
            with self._lock:  # latencies first: a scrape never sees drift gone and its latency missing
                previous, self._signatures = self._signatures, verdict.signatures
                drifting = {d.service for d in verdict.drifts}
                outcome.latencies = self.latency.observe(
                    seq, rules_at, previous, verdict.signatures,
                    lambda key: bool(drifting) if key == NODE_KEY else key in drifting)
                self.metrics.latency_pending.set(self.latency.waiting)
            kp_before = self.verdict.kube_proxy_programming if self.verdict else None
            for result in outcome.latencies:
                self._record_latency(result, programming_delta(kp_before, verdict.kube_proxy_programming))
            outcome.transitions = self.tracker.update(verdict.drifts, now, verdict.sync_in_progress)
            self.metrics.set_drifts(self.tracker.reported, self.tracker.pending)
            self._log_transitions(outcome.transitions, verdict)
            if (outcome.transitions.started or outcome.transitions.ended) and self.on_transitions:
                try:
                    self.on_transitions(outcome.transitions, verdict)
                except Exception as e:  # posting Events must never stop the verification loop
                    self.log(f"drift transitions not posted: {type(e).__name__}: {e}")
        self.verdict = verdict
        self._seq = seq
        if reread:
            self.last_full = now
            self._read_sync_age = verdict.sync_age
            next_interval, line = self.budget.after_check(duration)
            self.metrics.interval.set(next_interval)
            self.metrics.backoff.set(1 if self.budget.backing_off else 0)
            if line:
                self.log(line)
        if self.on_check:
            self.on_check(outcome)
        return outcome

    def _record_latency(self, result: Result, kube_proxy: str = "") -> None:
        entry = {"change": result.what, "seconds": result.latency, "between": [result.low, result.high],
                 "waited": result.waited, "kube_proxy": kube_proxy}
        self.recent.append(entry)
        if result.latency is None:
            self.metrics.latency_timeouts.inc()
            self.log(f"programming: {result.what}: not yet in the rules after {result.waited:.0f} s")
        else:
            self.metrics.latency.observe(result.latency)
            self.log(f"programming: {result.what}: in the rules after {result.latency:.2f} s "
                     f"(between {result.low:.2f} and {result.high:.2f} s)"
                     + (f"; {kube_proxy}" if kube_proxy else ""))

    def _log_transitions(self, tr: Transitions[DriftKey], verdict: Verdict) -> None:
        for key in tr.started:
            extra = f" ({verdict.sync_note})" if verdict.sync_note else ""
            self.log(f"drift started: {key.port} {key.kind} {key.ip_family}{extra}")
        for key in tr.ended:
            self.log(f"drift ended: {key.port} {key.kind} {key.ip_family}")

    # -- loop -------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """Healthy while checks succeed within a few intervals (for /healthz)."""
        if self.last_success is None:
            return (self.last_error is None, self.last_error or "starting: no check finished yet")
        age = self.clock() - self.last_success
        limit = max(3 * self.budget.effective, 60.0)
        if age > limit:
            return False, f"no successful check for {age:.0f} s ({self.last_error or 'verdict unknown'})"
        return True, f"ok: last successful check {age:.1f} s ago"

    def verdict_json(self) -> dict:
        v = self.verdict
        return {
            "node": self.options.node_name or (v.node if v else None),
            "verdict": None if v is None else v.summary,
            "error": self.last_error,
            "drift_reported": sorted(f"{d.port} {d.kind} {d.ip_family}" for d in self.tracker.reported),
            "drift_pending": sorted(f"{d.port} {d.kind} {d.ip_family}" for d in self.tracker.pending),
            "sync": None if v is None else v.sync_note,
            "interval_seconds": self.budget.effective,
            "programming": list(self.recent),
        }

    def run(self, stop: threading.Event) -> None:
        """Verify every interval; at once when the API changed (``wake``) or the node did (capture
        files, ruleset generation), and every ``latency_poll`` s while an API change waits to be
        programmed; never more often than the budget allows. A tick that finds neither the node nor
        the API changed re-uses the last read (a full re-read at least every ``full_resync`` s).
        Runs until ``stop`` is set (set ``wake`` too, to interrupt the wait)."""
        capture = isinstance(self.node, CaptureDir)
        poll = min(1.0, self.options.interval)  # how often a capture directory is looked at
        next_full = self.clock()
        last_read = last_probe = float("-inf")
        dirty = False  # a read is needed (API or node changed) but the budget says not yet
        while not stop.is_set():
            if self.wake.is_set():
                self.wake.clear()
                dirty = True
            now = self.clock()
            tick = now >= next_full
            waiting = self.latency.waiting > 0
            if not dirty and (tick or (waiting and now >= last_probe + self.options.latency_poll)
                              or (capture and now >= last_probe + poll)):
                last_probe = now
                dirty = self.node.changed()  # cheap: capture file stats, ruleset generation
                if not dirty and waiting:
                    self._unchanged_rules(now)
            # a failed last check, or an API that is only polled (no watch tells of its changes), is
            # read again at every tick: an old verdict must not stand for them
            stale = (self.verdict is None or self.last_error is not None or self.polled_api
                     or now - self.last_full >= self.options.full_resync)
            gap = max(self.options.latency_poll, self.budget.min_gap)
            if (dirty and (tick or now >= last_read + gap)) or (tick and stale):
                self.check()
                dirty = False
                last_read = last_probe = self.clock()
                next_full = last_read + self.budget.effective
            elif tick:
                self._retick()  # neither the node nor the API changed: only the clocks move
                next_full = self.clock() + self.budget.effective
            targets = [next_full]
            if dirty:
                targets.append(last_read + gap)
            if self.latency.waiting:
                targets.append(last_probe + self.options.latency_poll)
            if capture:
                targets.append(last_probe + poll)
            if not stop.is_set():
                self.wake.wait(max(0.01, min(targets) - self.clock()))

    def _unchanged_rules(self, now: float) -> None:
        """A cheap probe found the rules as the last read saw them: pending changes still wait."""
        with self._lock:
            results = self.latency.unchanged_rules(now)
            self.metrics.latency_pending.set(self.latency.waiting)
        for result in results:
            self._record_latency(result)

    def _retick(self) -> None:
        """Neither the node (capture files, ruleset generation) nor the API changed: the last verdict
        is still current; advance the grace clock and the latency timeouts."""
        assert self.verdict is not None
        now = self.clock()
        verdict = self.verdict
        if self._read_sync_age is not None:  # kube-proxy's queued change has waited longer by now
            verdict = dataclasses.replace(verdict)
            verdict.sync_age = self._read_sync_age + (now - self.last_full)
            verdict.sync_in_progress, verdict.sync_note = sync_state(verdict.sync_age, self.options.sync_wait)
        self._record(verdict, now, now, self._seq, reread=False)
