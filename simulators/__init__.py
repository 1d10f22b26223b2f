"""Local stand-ins for the vendor APIs this machine cannot reach.

Each simulator serves the real DummyJSON catalog, re-spelled in one platform's own wire format, over real
HTTP: its paths, pagination, auth, headers and failure modes. `make run`, the integration and e2e tests and
the benchmarks all talk to these instead of the internet. Entry points live in ``simulators.server``.
"""
