# The image for `--image` (the collector pod of --node and scan), for the TUI on a node through
# `kubectl debug`, and for `serve`: the release wheel from `make dist` plus the stock tools
# proxydoctor reads with. Build it from the same artifacts as the krew archive and pipx:
#   make dist && docker build -t IMAGE .
#   kubectl debug node/NAME -it --profile=sysadmin --image=IMAGE -- kubectl-proxydoctor tui
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables libnftables1 ipset iproute2 conntrack \
      ipvsadm curl kmod \
 && rm -rf /var/lib/apt/lists/*
# make dist leaves exactly one wheel of the package in dist/
COPY dist/kubectl_proxydoctor-*-py3-none-any.whl /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/kubectl_proxydoctor-*-py3-none-any.whl && rm -rf /tmp/dist
ENV TERM=xterm-256color
ENTRYPOINT ["kubectl-proxydoctor"]
CMD ["--help"]
