PYTHON ?= python

.PHONY: build lint format test bench

build:  ## build the Rust extension in place (needs an active virtualenv)
	maturin develop --release

lint:
	ruff check .
	ruff format --check .
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

format:
	ruff format .
	ruff check --fix .
	cargo fmt --all

test:
	$(PYTHON) -m pytest
	cargo test

bench:  ## measure on this machine's default device, append rows, re-render RESULTS.md
	$(PYTHON) -m qgfast bench --out benchmarks/results
	$(PYTHON) -m qgfast.bench.render_results benchmarks/results/*.jsonl --out benchmarks/RESULTS.md
