# Every target installs what it needs first, so a fresh Debian machine (as root) needs nothing else.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := iptables nftables libnftables1 ipset iproute2 conntrack ipvsadm nfacct prometheus
STAMP := $(VENV)/.installed

.PHONY: setup system-packages demo test lint fuzz bench clean dist dist-check

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root (apt-get install$$missing)"; exit 3; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: system-packages $(STAMP)

demo: setup
	$(BIN)/kubectl-proxydoctor status --sample
	$(BIN)/kubectl-proxydoctor check --sample || test $$? -eq 1

lint: setup
	$(BIN)/ruff check kubectl_proxydoctor tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup
	$(BIN)/ruff check kubectl_proxydoctor tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -p no:cacheprovider

fuzz: setup
	PROXYDOCTOR_FUZZ_EXAMPLES=100000 $(BIN)/pytest -q -s -p no:cacheprovider tests/fuzz  # -s: long-line/huge-file timings

bench: setup
	$(BIN)/python bench/run.py

# Release artifacts into $(DIST) (wheel, sdist, single-file executable, krew archive) and the sha256
# written into $(MANIFEST); then the manifest is checked against the archive.
DIST ?= dist
MANIFEST ?= plugin.yaml
DIST_TOOLS := $(VENV)/.dist-tools

$(DIST_TOOLS): $(STAMP) release/requirements-build.txt
	$(BIN)/pip install -q -r release/requirements-build.txt
	touch $(DIST_TOOLS)

dist: setup $(DIST_TOOLS)
	$(BIN)/python -m release.build --out $(DIST) --manifest $(MANIFEST)

# Release gate: a clean clone of HEAD rebuilds an archive whose sha256 is the committed plugin.yaml's.
dist-check: setup $(DIST_TOOLS)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && git clone -q . "$$tmp/src" && \
	  git show HEAD:plugin.yaml > "$$tmp/plugin.yaml" && \
	  (cd "$$tmp/src" && $(CURDIR)/$(BIN)/python -m release.build --out "$$tmp/dist" --manifest "$$tmp/src/plugin.yaml" >/dev/null) && \
	  $(BIN)/python -m release.krew verify "$$tmp/plugin.yaml" "$$tmp/dist" || \
	  { echo "the committed plugin.yaml does not match a rebuild: run make dist and commit plugin.yaml"; exit 1; }

clean:
	rm -rf $(VENV) build *.egg-info
