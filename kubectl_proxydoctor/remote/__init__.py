"""Remote nodes through Kubernetes itself: a short-lived pod on the node runs the shipped
collector script (scripts/collect-node.sh) over the exec API, and the capture comes back as a tar.
"""
