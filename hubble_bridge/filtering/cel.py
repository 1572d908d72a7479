"""`FlowFilter.experimental.cel_expression`: CEL over the flow, as Hubble evaluates it.

Hubble (cilium pkg/hubble/filters/cel_expression.go) declares the flow as the variable `_flow`
of type `flow.Flow` in the container `flow` (so `Verdict.FORWARDED` names the enum value),
type-checks each expression once per request and refuses one that does not yield a bool, caps
an expression at 4096 characters, OR-s the expressions of one filter, and reads an
evaluation error as "no match". The evaluator here is cel-expr-python, the CEL team's
binding of cel-cpp: the same checker and the protobuf types themselves, with no conversion of
the flow to a dict (docs/configuration.md compares it with the other CEL packages). Its
comprehension budget ends a runaway expression with an error, as Hubble's cost limit does, and
its `matches()` is RE2.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from hubble_bridge.api import flow_pb2
from hubble_bridge.filtering.errors import InvalidFilterError
from hubble_bridge.filtering.fields import Flow, Predicate

FLOW_VARIABLE = "_flow"
MAX_EXPRESSION_CHARS = 4096  # Hubble's celExpressionMaxSize


@cache
def _env() -> Any:
    # Imported on first use: a bridge that never sees a CEL filter does not load cel-cpp. The module
    # itself is named: cel_expr_python is a namespace package, with no file of its own to own it.
    import cel_expr_python.cel as cel

    # flow_pb2 is imported above, so flow.Flow is in the default descriptor pool.
    assert flow_pb2.Flow.DESCRIPTOR.full_name == "flow.Flow"
    return cel.NewEnv(container="flow", variables={FLOW_VARIABLE: cel.Type("flow.Flow")})


def compile_expression(field: str, expression: str) -> Any:
    """A checked CEL program; InvalidFilterError with the checker's first error otherwise."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        shown = expression[:40] + "..."
        raise InvalidFilterError(field, shown, f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        program = _env().compile(expression)
    except RuntimeError as exc:
        raise InvalidFilterError(field, expression, f"CEL: {_first_error(str(exc))}") from None
    returns = program.return_type()
    if returns != _bool_type():
        # dyn too, as cel-go's OutputType check in Hubble refuses it.
        wrong = returns.name().lower() if returns.name().isupper() else returns.name()
        raise InvalidFilterError(field, expression, f'CEL: got "{wrong}", wanted "bool" result type')
    return program


@cache
def _bool_type() -> Any:
    import cel_expr_python.cel as cel

    return cel.Type.BOOL


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.replace("INVALID_ARGUMENT:", "").splitlines() if line.strip()]
    return lines[0].removeprefix("ERROR: ") if lines else text


def build(field: str, expressions: Sequence[str]) -> Predicate:
    programs = tuple(compile_expression(field, expression) for expression in expressions)

    def match(flow: Flow) -> bool:
        data = {FLOW_VARIABLE: flow}
        for program in programs:
            try:
                if program.eval(data=data).value() is True:
                    return True
            except RuntimeError:
                # Hubble logs and reads an evaluation error (budget exceeded, no such key) as false.
                continue
        return False

    return match
