"""kubectl-proxydoctor: did kube-proxy program what the API says it should?"""

__version__ = "0.1.0"
