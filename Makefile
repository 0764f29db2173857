# The two commands: `make run` (portal + demo lab on http://127.0.0.1:8000) and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
MANAGE := $(PY) manage.py
HOST ?= 127.0.0.1
PORT ?= 8000
REDIS_URL ?= redis://127.0.0.1:6379/0
export REDIS_URL

.PHONY: run stop test test-pg venv migrate seed redis lint check clean vendor browser

venv:
	@scripts/bootstrap.sh

migrate: venv
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput -v0

seed: migrate
	$(MANAGE) seed_profiles
	$(MANAGE) seed_demo

# Start a local Redis (Celery broker, Channels layer) unless one already answers.
redis:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@redis-cli -u $(REDIS_URL) ping >/dev/null 2>&1 || { mkdir -p var/redis && redis-server --bind 127.0.0.1 --port $$(echo $(REDIS_URL) | sed -E 's|.*:([0-9]+)/.*|\1|') --dir var/redis --daemonize yes --logfile $(CURDIR)/var/redis.log && echo "Redis started ($(REDIS_URL))"; }

# Redis, the lab (VM lab if libvirtd + QEMU can run here, else the test-driver lab), a worker per host,
# beat, and the portal in the foreground (scripts/run.sh).
run: redis seed
	HOST=$(HOST) PORT=$(PORT) scripts/run.sh

# Stop everything `make run` started, also from another terminal or after run.sh was killed: the portal,
# its workers, beat, the outbox relay and the console relay (var/run.pids), the Redis it started (the one whose data
# dir is var/redis; another Redis is left alone), and the VM lab's libvirtd and virtlogd. Lab guests
# still running are not destroyed: their QEMU processes outlive libvirtd, which takes them back at the
# next `make run` (release their desktops in the portal first to end them); it says how many.
stop:
	@if [ -s var/run.pids ]; then \
	    pids=$$(cat var/run.pids); \
	    for pid in $$pids; do kill -TERM -- -$$pid 2>/dev/null || kill -TERM $$pid 2>/dev/null || true; done; \
	    for _ in $$(seq 100); do alive=0; for pid in $$pids; do kill -0 $$pid 2>/dev/null && alive=1; done; \
	        [ $$alive = 0 ] && break; sleep 0.2; done; \
	    for pid in $$pids; do kill -KILL -- -$$pid 2>/dev/null || kill -KILL $$pid 2>/dev/null || true; done; \
	    rm -f var/run.pids; echo "Portal, workers, beat, outbox relay and console relay stopped"; \
	else echo "Portal: not running (no var/run.pids)"; fi
	@if [ "$$(redis-cli -u $(REDIS_URL) config get dir 2>/dev/null | sed -n 2p)" = "$(CURDIR)/var/redis" ]; then \
	    redis-cli -u $(REDIS_URL) shutdown >/dev/null 2>&1; echo "Redis stopped ($(REDIS_URL))"; \
	else echo "Redis: none started by make run answers at $(REDIS_URL)"; fi
	@if scripts/vmlab.sh status 2>/dev/null | grep -q "libvirtd running"; then \
	    guests=$$($(PY) -c 'import libvirt; libvirt.registerErrorHandler(lambda *a: None, None); print(len(libvirt.open("qemu:///system").listDomainsID()))' 2>/dev/null || echo "?"); \
	    [ "$$guests" = 0 ] || echo "VM lab: $$guests guest(s) still running; libvirtd takes them back at the next make run"; \
	fi
	@scripts/vmlab.sh stop && echo "VM lab daemons (libvirtd, virtlogd) stopped"

# Fast tier on SQLite unless DATABASE_URL points elsewhere (CI sets PostgreSQL).
test: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	$(MANAGE) check
	$(MANAGE) makemigrations --check --dry-run
	.venv/bin/pytest

# What CI runs: the suite against real PostgreSQL and Redis servers on loopback.
test-pg: venv
	urls=$$(scripts/services.sh start) && eval "$$urls" && export DATABASE_URL REDIS_URL && $(MAKE) test

# Re-fetch the browser libraries (uPlot, htmx, noVNC) from npm per frontend/package-lock.json into static/vendor/.
# The vendored copies are committed: the portal never loads anything from a CDN.
vendor:
	scripts/vendor.sh

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser: venv
	scripts/browser.sh

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

clean:
	rm -rf .venv staticfiles .pytest_cache .ruff_cache
