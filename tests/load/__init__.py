"""Load test: ``tests/load/locustfile.py`` (Locust) and ``python -m tests.load.run``,
which starts a local service and runs Locust headless against it."""
