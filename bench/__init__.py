"""Benchmarks of the hub on this machine's real servers; each figure beside its naive baseline.

Run one with ``python -m bench.<name>`` (``bench.bus``); results go to ``docs/benchmarks.md``.
Nothing here is imported by the hub.
"""
