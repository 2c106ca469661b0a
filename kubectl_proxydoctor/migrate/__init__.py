"""`migrate-check`: is a node / the cluster ready to change kube-proxy's mode?

One small module per check family (kernel, nodeports, firewall, conntrack, third_party, config,
ipvs, clusterip); ``engine.run`` runs them and returns a ``Readiness`` with a verdict and a plan.
"""
