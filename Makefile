# The README's two commands: `make demo` (set up, then audit the bundled samples into a Parquet
# report, fix the failing ones with the policy's remedies into data/remedied/ and print the
# before/after and per-file tables) and `make test` (set up, lint with ruff and mypy, then run the whole
# test suite).
# .ci/run calls `make test`.
.PHONY: setup samples demo test bench lock

setup:
	./scripts/setup.sh

samples: setup
	.venv/bin/python data/make_samples.py data/samples

demo: samples
	.venv/bin/audioqc audit data/samples --report data/report --policy ebu-r128 --remedy-to data/remedied
	.venv/bin/audioqc diagnose --table data/samples/*

test: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/bench_loudness.py

# Regenerate the lock from pyproject.toml (needs a clean venv; commit the result).
lock:
	rm -rf /tmp/audioqc-lock && python3 -m venv /tmp/audioqc-lock
	/tmp/audioqc-lock/bin/pip install -q -e '.[test]'
	/tmp/audioqc-lock/bin/pip freeze --exclude-editable | grep -v '^audioqc' > requirements.lock
