"""`kubectl proxydoctor serve`: verify the node continuously; Prometheus metrics, Events, latency."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubectl_proxydoctor.cli.app import app
from kubectl_proxydoctor.cli.check import ContextOpt, KubeconfigOpt, NodeNameOpt
from kubectl_proxydoctor.cli.common import FromOpt

IntervalOpt = Annotated[float, typer.Option("--interval", help="Seconds between full re-reads of the node.")]
GraceOpt = Annotated[float, typer.Option(
    "--grace", help="A drift is reported only after it lasted this many seconds (and kube-proxy is not "
    "syncing).")]
HoldOpt = Annotated[float | None, typer.Option(
    "--hold", help="A drift ends only after it stayed away this many seconds (default: --grace).")]
SyncWaitOpt = Annotated[float, typer.Option(
    "--sync-wait", help="A kube-proxy change queued less than this many seconds ago postpones drift; "
    "older, kube-proxy is stuck and postpones nothing.")]
LatencyTimeoutOpt = Annotated[float, typer.Option(
    "--latency-timeout", help="An API change not in the rules after this many seconds counts as 'not yet'.")]
LatencyPollOpt = Annotated[float, typer.Option(
    "--latency-poll", help="Re-read cadence (s) while an API change waits to be programmed.")]
FullResyncOpt = Annotated[float, typer.Option(
    "--full-resync", help="Re-read the node in full at least this often (s), even when its ruleset "
    "generation and the API did not change.")]
NoWatchOpt = Annotated[bool, typer.Option(
    "--no-watch", help="Read the API whole at every check instead of list+watch.")]
EventsOpt = Annotated[bool, typer.Option(
    "--events/--no-events",
    help="Post Kubernetes Events on the Service and the Node when drift starts/ends.")]
NetnsOpt = Annotated[str | None, typer.Option(
    "--netns", hidden=True, help="Read this network namespace instead of the host (tests).")]


def _positive(name: str, value: float | None, zero_ok: bool = False) -> None:
    from kubectl_proxydoctor.errors import UsageError

    if value is not None and (value < 0 or (value == 0 and not zero_ok)):
        raise UsageError(f"{name} must be {'>= 0' if zero_ok else '> 0'} (got {value:g})")


def build_engine(from_path: Path | None, kubeconfig: Path | None, context: str | None, node_name: str | None,
                 netns: str | None, no_watch: bool, options, *, log=None, metrics=None, on_check=None):
    """The engine for the chosen sources (and the watcher to start, or None)."""
    from kubectl_proxydoctor.errors import BundleError, UsageError
    from kubectl_proxydoctor.serve.engine import Engine
    from kubectl_proxydoctor.serve.sources import (
        ApiSource,
        CaptureDir,
        LiveNode,
        NodeSource,
        PolledApi,
        node_name_default,
    )

    if from_path is not None and netns is not None:
        raise UsageError("--from and --netns exclude each other")
    use_api = from_path is None or kubeconfig is not None or context is not None
    if from_path is not None:
        if not from_path.exists():  # as check and tui: a capture that cannot be read is exit 3
            raise BundleError(f"--from {from_path}: no such file or directory")
        node_source: NodeSource = CaptureDir(from_path)
    else:
        import socket

        node_name = node_name_default(node_name) or socket.gethostname()
        node_source = LiveNode(netns=netns, node_name=node_name)
    options.node_name = node_name
    kc = str(kubeconfig) if kubeconfig else None
    watcher = None
    api: ApiSource | None = None
    if use_api:
        from kubectl_proxydoctor.collect.api import load_client

        load_client(kc, context).client.close()  # unusable credentials: one line, exit 3, at start
        if no_watch:
            api = PolledApi(kc, context, node_name)
        else:
            from kubectl_proxydoctor.serve.apiwatch import WatchedApi

            watcher = api = WatchedApi(kc, context, node_name, log=log)
    engine = Engine(node_source, api, options, metrics, log=log, on_check=on_check)
    if watcher is not None:
        watcher.on_change = engine.api_changed
        watcher.on_error = lambda source: engine.metrics.source_errors.labels(source).inc()
    return engine, watcher


@app.command("serve")
def serve_cmd(
    from_path: FromOpt = None,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT for /metrics, /healthz, /verdict.")]
    = "0.0.0.0:9977",
    interval: IntervalOpt = 30.0,
    grace: GraceOpt = 60.0,
    hold: HoldOpt = None,
    sync_wait: SyncWaitOpt = 60.0,
    latency_timeout: LatencyTimeoutOpt = 120.0,
    latency_poll: LatencyPollOpt = 1.0,
    full_resync: FullResyncOpt = 300.0,
    node_name: NodeNameOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    no_watch: NoWatchOpt = False,
    events: EventsOpt = True,
    netns: NetnsOpt = None,
) -> None:
    """Verify the node continuously: re-run `check` every --interval (at once on an API change or,
    with --from DIR, when the capture's files change), export Prometheus metrics on --listen, measure
    programming latency, and post Events when drift starts and ends. Runs until SIGTERM/Ctrl-C."""
    import signal
    import sys
    import threading

    from kubectl_proxydoctor.serve.engine import Options
    from kubectl_proxydoctor.serve.http import MetricsServer, parse_listen
    from kubectl_proxydoctor.serve.metrics import ServeMetrics

    for name, value, zero_ok in (("--interval", interval, False), ("--grace", grace, True),
                                 ("--hold", hold, True), ("--sync-wait", sync_wait, True),
                                 ("--latency-timeout", latency_timeout, False),
                                 ("--latency-poll", latency_poll, False),
                                 ("--full-resync", full_resync, False)):
        _positive(name, value, zero_ok)
    parse_listen(listen)

    def log(line: str) -> None:
        import time

        print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + " " + line, file=sys.stderr, flush=True)

    options = Options(interval=interval, grace=grace, hold=hold, sync_wait=sync_wait,
                      latency_timeout=latency_timeout, latency_poll=latency_poll, full_resync=full_resync)
    metrics = ServeMetrics()
    engine, watcher = build_engine(from_path, kubeconfig, context, node_name, netns, no_watch, options,
                                   log=log, metrics=metrics)
    if watcher is None and events and no_watch:
        log("--no-watch: Events are posted only while the API is watched; none will be posted")
    if watcher is not None and events:
        from kubectl_proxydoctor.serve.events import EventSink

        sink = EventSink(watcher.client, options.node_name, log=log, uid_of=watcher.uid_of,
                         on_error=lambda source: metrics.source_errors.labels(source).inc())
        engine.on_transitions = sink.transitions
    server = MetricsServer(listen, metrics.registry, engine.health, engine.verdict_json).start()
    log(f"serving /metrics, /healthz, /verdict on {server.address}; "
        f"interval {interval:g} s, grace {grace:g} s")
    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()
        engine.wake.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if watcher is not None:
            watcher.start(stop)
        engine.run(stop)
    finally:
        server.stop()
        if watcher is not None:
            watcher.stop()
    log("stopped")


@app.command("watch")
def watch_cmd(
    from_path: FromOpt = None,
    interval: IntervalOpt = 5.0,
    grace: GraceOpt = 0.0,
    hold: HoldOpt = None,
    sync_wait: SyncWaitOpt = 60.0,
    latency_timeout: LatencyTimeoutOpt = 120.0,
    latency_poll: LatencyPollOpt = 1.0,
    full_resync: FullResyncOpt = 300.0,
    node_name: NodeNameOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    no_watch: NoWatchOpt = False,
    netns: NetnsOpt = None,
) -> None:
    """Follow the node's verdict at a terminal: the same engine as `serve` (re-reads every --interval,
    at once on an API change or when a --from capture changes); prints the verdict whenever it
    changes, and each measured programming latency. Ctrl-C stops."""
    import signal
    import sys
    import threading
    from datetime import datetime

    from kubectl_proxydoctor.serve.engine import Options
    from kubectl_proxydoctor.serve.view import render, state_key

    for name, value, zero_ok in (("--interval", interval, False), ("--grace", grace, True),
                                 ("--hold", hold, True), ("--sync-wait", sync_wait, True),
                                 ("--latency-timeout", latency_timeout, False),
                                 ("--latency-poll", latency_poll, False),
                                 ("--full-resync", full_resync, False)):
        _positive(name, value, zero_ok)
    options = Options(interval=interval, grace=grace, hold=hold, sync_wait=sync_wait,
                      latency_timeout=latency_timeout, latency_poll=latency_poll, full_resync=full_resync)
    shown: list[tuple] = []

    def log(line: str) -> None:
        if line.startswith("programming:") or line.startswith("a full re-read") or "watch " in line:
            print(f"{datetime.now():%H:%M:%S}  {line}", flush=True)

    def on_check(outcome) -> None:
        key = state_key(outcome.verdict, outcome.error, engine.tracker.reported, engine.tracker.pending)
        if not shown or shown[-1] != key:
            shown[:] = [key]
            print(render(outcome.verdict, outcome.error, engine.tracker.reported, engine.tracker.pending,
                         datetime.now(), options.node_name), flush=True)

    engine, watcher = build_engine(from_path, kubeconfig, context, node_name, netns, no_watch, options,
                                   log=log, on_check=on_check)
    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()
        engine.wake.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if watcher is not None:
            watcher.start(stop)
        engine.run(stop)
    finally:
        if watcher is not None:
            watcher.stop()
    sys.stdout.flush()
