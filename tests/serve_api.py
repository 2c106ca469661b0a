"""Serve an api.json with the test API server until stdin closes (or SIGTERM); print the port first.

Used to run the API *inside* a network namespace, next to the live node state:

    ip netns exec NS python -m tests.serve_api tests/fixtures/iptables/healthy/api.json
    -> prints "PORT 41234" on one line, then serves on 127.0.0.1:41234
"""

from __future__ import annotations

import signal
import sys

from tests.apiserver import FakeApiServer


def main(argv: list[str]) -> int:
    """Serve ``argv[0]`` (an api.json) on 127.0.0.1; return when stdin reaches EOF."""
    if len(argv) != 1:
        print("usage: python -m tests.serve_api API_JSON", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with FakeApiServer.from_api_json(argv[0]) as server:
        print(f"PORT {server.port}", flush=True)
        sys.stdin.read()  # the parent closes our stdin (or kills us) to stop the server
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
