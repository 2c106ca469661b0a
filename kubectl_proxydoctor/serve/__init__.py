"""Continuous verification (`serve`, `watch`): the node's verdict kept current.

Pure domain modules (no I/O, time passed in): ``verdict`` (a NodeReport summarised into what is
watched), ``grace`` (drift reported only when it outlives a grace period), ``latency`` (API change ->
rules reflect it), ``budget`` (interval back-off). Glue: ``sources`` (capture directory or live node,
API), ``engine`` (the loop), ``metrics`` and ``http`` (Prometheus), ``apiwatch`` (list+watch),
``events`` (Kubernetes Events).
"""
