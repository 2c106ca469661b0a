# An image with proxydoctor and the stock tools it reads with, for the TUI on a node:
#   kubectl debug node/NAME -it --profile=sysadmin --image=<this image> -- kubectl-proxydoctor tui
# and as the collector image (--image) for --node and scan.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables libnftables1 ipset iproute2 conntrack \
      ipvsadm curl kmod \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY kubectl_proxydoctor /src/kubectl_proxydoctor
RUN pip install --no-cache-dir /src && rm -rf /src
ENV TERM=xterm-256color
ENTRYPOINT ["kubectl-proxydoctor"]
CMD ["--help"]
