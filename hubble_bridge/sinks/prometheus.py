"""Prometheus exposition of metric snapshots: text format 0.0.4, or OpenMetrics 1.0 with exemplars.

Names follow the OpenTelemetry-to-Prometheus rules Hubble's own metrics already
match: dots become underscores, unit "s" adds "_seconds", counters end in
"_total" ("hubble.flows_processed" -> "hubble_flows_processed_total"). The
resource is exposed once as `target_info`.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from decimal import Decimal

from hubble_bridge.telemetry import (
    Exemplar,
    HistogramPoint,
    MetricFamily,
    MetricKind,
    MetricsSnapshot,
    PointAttributes,
    Resource,
)

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}
_TYPES = {MetricKind.COUNTER: "counter", MetricKind.GAUGE: "gauge", MetricKind.HISTOGRAM: "histogram"}
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]+")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]+")


def _sanitise(name: str, invalid: re.Pattern[str]) -> str:
    name = re.sub("__+", "_", invalid.sub("_", name))
    return "_" + name if name[:1].isdigit() else name


def prometheus_name(family: MetricFamily) -> str:
    name = _sanitise(family.name, _INVALID_NAME)
    suffix = UNIT_SUFFIXES.get(family.unit)
    if suffix and not name.endswith("_" + suffix):
        name += "_" + suffix
    if family.kind is MetricKind.COUNTER and not name.endswith("_total"):
        name += "_total"
    return name


def label_name(key: str) -> str:
    return _sanitise(key, _INVALID_LABEL)


def _escape(value: str, quote: bool = True) -> str:
    value = value.replace("\\", "\\\\").replace("\n", "\\n")
    return value.replace('"', '\\"') if quote else value


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def go_float(value: float, openmetrics: bool = False) -> str:
    """A float as client_golang's expfmt writes `le` and `quantile` (prometheus/common expfmt
    writeFloat: strconv 'g' with the shortest digits, "1e+06" from a million on); OpenMetrics
    (writeOpenMetricsFloat) adds ".0" to a number with neither "." nor "e". Prometheus keeps
    label values as text, so `le="1"` and `le="1.0"` are different series to a dashboard."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = _go_g(value)
    if openmetrics and "." not in text and "e" not in text:
        text += ".0"
    return text


def _go_g(value: float) -> str:
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    # repr gives the shortest digits that read back as the same float, as Go's shortest mode.
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    point = len(digit_tuple) + int(exponent)  # decimal point position after the first digit run
    exp = point - 1
    minus = "-" if sign else ""
    if exp < -4 or exp >= 6:  # Go's %e switch for shortest %g (eprec = 6)
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{minus}{digits}{'0' * (point - len(digits))}"
    return f"{minus}{digits[:point]}.{digits[point:]}"


def _labels(attributes: PointAttributes, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = [f'{label_name(k)}="{_escape(str(v))}"' for k, v in (*attributes, *extra)]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def render_prometheus(snapshots: Sequence[MetricsSnapshot], openmetrics: bool = False) -> str:
    """All families of all snapshots; families with the same name are merged into one block."""
    lines: list[str] = []
    resources = list(dict.fromkeys(s.resource for s in snapshots if s.resource))
    if resources:
        _target_info(lines, resources, openmetrics)
    blocks: dict[str, list[MetricFamily]] = {}
    for snapshot in snapshots:
        for family in snapshot.families:
            blocks.setdefault(prometheus_name(family), []).append(family)
    for name, families in blocks.items():
        first = families[0]
        kind = first.kind
        family_name = name[: -len("_total")] if openmetrics and kind is MetricKind.COUNTER else name
        if first.description:
            lines.append(f"# HELP {family_name} {_escape(first.description, quote=openmetrics)}")
        lines.append(f"# TYPE {family_name} {_TYPES[kind]}")
        for family in families:
            for point in family.points:
                if isinstance(point, HistogramPoint):
                    _histogram(lines, name, point, family.bounds, openmetrics)
                else:
                    lines.append(f"{name}{_labels(point.attributes)} {_number(point.value)}")
    if openmetrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _target_info(lines: list[str], resources: list[Resource], openmetrics: bool) -> None:
    family = "target" if openmetrics else "target_info"
    lines.append(f"# HELP {family} Target metadata")
    lines.append(f"# TYPE {family} {'info' if openmetrics else 'gauge'}")
    lines.extend(f"target_info{_labels(resource)} 1" for resource in resources)


def _histogram(
    lines: list[str], name: str, point: HistogramPoint, bounds: Sequence[float], openmetrics: bool
) -> None:
    exemplars: dict[int, Exemplar] = {}
    if openmetrics:
        for exemplar in point.exemplars:
            index = bisect.bisect_left(bounds, exemplar.value)
            if index not in exemplars or exemplars[index].time_ns <= exemplar.time_ns:
                exemplars[index] = exemplar
    cumulative = 0
    les = [*(go_float(float(b), openmetrics) for b in bounds), "+Inf"]
    for index, le in enumerate(les):
        cumulative += point.bucket_counts[index] if index < len(point.bucket_counts) else 0
        line = f"{name}_bucket{_labels(point.attributes, (('le', le),))} {cumulative}"
        if index in exemplars:
            line += _exemplar(exemplars[index])
        lines.append(line)
    lines.append(f"{name}_sum{_labels(point.attributes)} {_number(point.sum)}")
    lines.append(f"{name}_count{_labels(point.attributes)} {point.count}")


def _exemplar(exemplar: Exemplar) -> str:
    ids = [("trace_id", exemplar.trace_id.hex())]
    if exemplar.span_id:
        ids.append(("span_id", exemplar.span_id.hex()))
    timestamp = f"{exemplar.time_ns // 1_000_000_000}.{exemplar.time_ns % 1_000_000_000:09d}"
    return f" # {_labels(tuple(ids))} {_number(exemplar.value)} {timestamp}"


Route = Callable[[dict[str, str]], tuple[int, str, bytes]]


def metrics_route(collect: Callable[[], Sequence[MetricsSnapshot]]) -> Route:
    """An HttpEndpoint route serving `collect()`, in OpenMetrics when the scraper's Accept asks for it."""

    def handle(headers: dict[str, str]) -> tuple[int, str, bytes]:
        openmetrics = "application/openmetrics-text" in headers.get("accept", "")
        body = render_prometheus(collect(), openmetrics=openmetrics).encode()
        return 200, OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE, body

    return handle
