"""Errors raised while compiling FlowFilters: one line naming the filter, field and value."""

from __future__ import annotations

from hubble_bridge.errors import BridgeError


class UnsupportedFilterError(BridgeError):
    """A populated FlowFilter field this bridge does not evaluate (never silently ignored)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field
        self.where = ""

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f'{prefix}filter field "{self.field}" is not supported'


class InvalidFilterError(BridgeError):
    """A FlowFilter value Hubble would reject: bad CIDR, regex, port, pattern or JSON."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(field, value, reason)
        self.field = field
        self.value = value
        self.reason = reason
        self.where = ""

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        if not self.field:
            return f"{prefix}{self.reason}"
        shown = "" if self.value is None else f" has invalid value {_show(self.value)}"
        return f'{prefix}filter field "{self.field}"{shown}: {self.reason}'


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)
