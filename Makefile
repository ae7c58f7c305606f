# kenornir developer entry points. `make test` and `make demo` work on a fresh machine:
# they create the virtualenv and, as root, install the lab's Debian packages when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
N      ?= 5
ARGS   ?=
W        ?= 10
ROUNDS   ?= 3
SCENARIO ?= loopback

.PHONY: setup deps test lint fmt lab lab-down lab-status demo readme-example bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# The lab needs sshd and sudo, zstd (what kenornir unpacks keadm with on nodes that have it),
# busybox (the BusyBox node flavour), iproute2 (sites: network namespaces and veth) and
# redis-server (the broker of --broker runs); install them only when missing and only as root.
deps:
	@if [ ! -x /usr/sbin/sshd ] || ! command -v sudo >/dev/null || ! command -v zstd >/dev/null \
	  || [ ! -x /usr/bin/busybox ] || ! command -v ip >/dev/null || [ ! -x /usr/bin/redis-server ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server sudo zstd busybox iproute2 redis-server >/dev/null; \
	  else echo "lab needs openssh-server, sudo, zstd, busybox, iproute2 and redis-server (run as root to install them)"; fi; \
	fi

test: setup deps
	$(PY) -m pytest $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict kenornir

fmt: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lab: setup deps
	$(PY) -m tests.lab up --nodes $(N) --arch-mix $(if $(SITE),--site $(SITE))

lab-down: setup
	$(PY) -m tests.lab down

lab-status: setup
	$(PY) -m tests.lab status

# The batch on the lab: upstream-format config, offline packages, a known_hosts of the lab's own.
demo: lab
	$(PY) -m kenornir inventory/lab.yaml --known-hosts .lab/known_hosts $(ARGS)

# Rewrites README.md's captured lab run (a test fails when it no longer matches the code).
readme-example: setup deps
	$(PY) -m tests.readme_example --write

# The side-by-side benchmark (bench/README.md): make bench N=30 W=10 [SCENARIO=edge-link]
bench: setup deps
	@command -v nft >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null
	$(PY) -m bench --nodes $(N) --workers $(W) --rounds $(ROUNDS) --scenario $(SCENARIO) $(ARGS)

clean: lab-down
	rm -rf $(VENV) .lab build *.egg-info
