"""``python -m simulators``: the demo vendors `make run` talks to, on ports 9101-9103."""

from simulators.server import DEMO_SIMULATORS, run_simulators

if __name__ == "__main__":
    run_simulators(DEMO_SIMULATORS)
