"""CPU by thread group: a thread's CPU lands in its group, stays there after it ends, and the groups add up."""

from __future__ import annotations

import threading
import time

from app.health.thread_cpu import ThreadCpu, group_of


def _burn(seconds: float, spent: list[float]) -> None:
    """Busy for ``seconds`` of this thread's own CPU; records what it spent."""
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        sum(i * i for i in range(1000))
    spent.append(time.thread_time() - started)


def test_pool_numbers_are_cut_and_unnamed_threads_grouped() -> None:
    assert group_of("store-read_3") == "store-read"
    assert group_of("asyncio_0") == "executor"
    assert group_of("uvloop_2") == "executor"
    assert group_of("ThreadPoolExecutor-0_1") == "executor"
    assert group_of("sqlite-writer") == "sqlite-writer"
    assert group_of("Thread-12 (run)") == "unnamed"
    assert group_of("MainThread") == "MainThread"


def test_a_threads_cpu_is_counted_in_its_group_and_kept_after_it_ends() -> None:
    cpu = ThreadCpu()
    spent: list[float] = []
    release = threading.Event()

    def work() -> None:
        _burn(0.2, spent)
        release.wait(10)

    thread = threading.Thread(target=work, name="burner_0", daemon=True)
    thread.start()
    while not spent:
        time.sleep(0.01)
    during = cpu.read()
    assert during["burner"] >= spent[0] * 0.99  # its clock, read while it lives
    release.set()
    thread.join()
    _burn(0.05, [])  # more CPU on this thread, none on the ended one
    after = cpu.read()
    assert after["burner"] >= during["burner"]  # an ended thread's CPU stays (a counter never goes back)
    assert after["burner"] < during["burner"] + 0.05
    assert after["MainThread"] > during.get("MainThread", 0.0)
    assert all(after[g] >= during.get(g, 0.0) for g in during)


def test_the_groups_add_up_to_the_process_cpu() -> None:
    cpu = ThreadCpu()
    _burn(0.05, [])
    before = time.process_time()
    groups = cpu.read()
    after = time.process_time()
    assert before <= sum(groups.values()) <= after
    assert groups["other"] >= 0.0
    names = {m.name for m in cpu.metrics()}
    assert names == {"process_cpu_seconds_total", "catalog_thread_cpu_seconds_total"}
