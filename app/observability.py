"""Metrics in the Prometheus text format, gathered from providers the composition root registers.

A provider is any callable returning ``Metric`` values, so a component adds its gauges by appending one to
``Container.metric_providers``; GET /metrics renders them all. No client library: the format is a few lines of text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

MetricProvider = Callable[[], Iterable["Metric"]]


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    type: Literal["gauge", "counter"]
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(metrics: Iterable[Metric]) -> str:
    """Samples of one name are grouped under one HELP/TYPE header, as the format requires."""
    grouped: dict[str, list[Metric]] = {}
    for metric in metrics:
        grouped.setdefault(metric.name, []).append(metric)
    lines: list[str] = []
    for name, samples in grouped.items():
        lines.append(f"# HELP {name} {samples[0].help}")
        lines.append(f"# TYPE {name} {samples[0].type}")
        for m in samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(m.labels.items()))
            lines.append(f"{name}{{{labels}}} {_number(m.value)}" if labels else f"{name} {_number(m.value)}")
    return "\n".join(lines) + "\n"
