# Every target sets up what it needs by itself: the Debian packages mariadb-server,
# redis-server, and libmariadb-dev with pkg-config (mysqlclient, a test dependency, builds
# against them), installed with apt-get when missing, and .venv with resil and its test
# extra (rebuilt when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench bench-switch bench-failover bench-instructions bench-reads docs servers venv clean

demo: venv servers  ## two units of a shop (Django + Flask under resil-run): switch, cut, kill -9
	@$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install --quiet -e '.[test,demo]'
	$(PY) examples/demo/run.py

test: venv servers  ## the test suite (real servers, started and stopped by the tests)
	$(PY) -m pytest

bench: venv servers  ## overhead and start-up benchmarks, ratios against the unpatched baseline
	$(PY) benchmarks/overhead.py

bench-switch: venv servers  ## planned switches under load: pause, errors, lost writes, steps
	$(PY) benchmarks/switch.py

bench-failover: venv servers  ## kill -9 of a primary under load: detection, first write, losses
	$(PY) benchmarks/failover.py

bench-instructions: venv servers  ## instructions per round trip under callgrind (needs valgrind)
	$(PY) benchmarks/instructions.py

bench-reads: venv servers  ## same-unit reads from the unit without the primary, over a delayed link
	$(PY) benchmarks/reads.py

docs: venv  ## regenerate docs/configuration.md from src/resil/envvars.py
	$(PY) -c "from resil.envvars import markdown; print(markdown(), end='')" > docs/configuration.md

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | servers
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

servers:
	@if ! PATH="$$PATH:/usr/sbin:/sbin" command -v mariadbd >/dev/null || ! command -v redis-server >/dev/null \
			|| ! pkg-config --exists libmariadb 2>/dev/null; then \
		echo "installing mariadb-server, redis-server and libmariadb-dev (Debian packages)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
			mariadb-server mariadb-client redis-server libmariadb-dev pkg-config >/dev/null; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
