"""The Jepsen-style fault suite (issue 6): see docs/reliability.md and
``python -m tests.faults``."""
