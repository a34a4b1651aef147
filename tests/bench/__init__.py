"""Benchmarks: ``python -m tests.bench [--db sqlite|postgres|both] [--quick]``.

The benchmark starts the service itself (``python run.py`` on a free port, a
fresh data directory and, for PostgreSQL, a fresh database), seeds it through
the API (and through SQL for the 100,000-message case), measures from this
process and from separate fan-out client processes, prints each figure beside
its target and writes the whole run to ``var/bench/<timestamp>.json``.

Modules: :mod:`.service` (the server subprocess and its database),
:mod:`.scenarios` (request latencies), :mod:`.seed` (API and SQL seeding),
:mod:`.fanout` with :mod:`.fanout_client` (one session, many members),
:mod:`.report` (targets and the table), :mod:`.profile_summary` (py-spy output
by function) and :mod:`.me_latency` (a standalone ``/api/me`` timer).
"""
