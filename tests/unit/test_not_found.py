"""The not-found memory both runtimes keep (the tracker of every node, the Flink job), on a clock the test moves."""

from __future__ import annotations

from app.ingest.not_found import NotFoundMemory


class Ticks:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_answers_until_its_time_is_up_and_a_new_answer_starts_a_new_period() -> None:
    ticks = Ticks()
    memory: NotFoundMemory[str] = NotFoundMemory(10, clock=ticks)
    memory.remember("v", "1", "first")
    ticks.now += 9.9
    assert memory.get("v", "1") == "first"
    assert memory.get("v", "2") is None and memory.get("w", "1") is None
    ticks.now += 0.1
    assert memory.get("v", "1") is None and len(memory) == 0
    memory.remember("v", "1", "second")
    ticks.now += 9
    assert memory.get("v", "1") == "second"


def test_no_time_means_nothing_is_remembered() -> None:
    memory: NotFoundMemory[str] = NotFoundMemory(0)
    memory.remember("v", "1", "x")
    assert memory.get("v", "1") is None and len(memory) == 0


def test_it_is_bounded_oldest_first_and_forgets_a_vendor() -> None:
    memory: NotFoundMemory[int] = NotFoundMemory(60, max_entries=3)
    for n in range(4):
        memory.remember("v" if n % 2 else "w", str(n), n)
    assert [memory.get("v" if n % 2 else "w", str(n)) for n in range(4)] == [None, 1, 2, 3]
    memory.forget_vendor("v")
    assert [memory.get("v" if n % 2 else "w", str(n)) for n in range(4)] == [None, None, 2, None]
