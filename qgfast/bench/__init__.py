"""Throughput benchmarks against the pure-PyTorch reference (and third-party anchors where
installed), shipped in the wheel: ``qgfast bench`` runs them from any folder; each module
also runs alone (``python -m qgfast.bench.bench_losses``). Rows go to JSON-lines files,
``render_results`` turns them into a RESULTS.md."""
