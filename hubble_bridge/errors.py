"""Errors a user can act on.

Anything raised as a BridgeError reaches the user as one line naming what and
where (the CLI prints it without a traceback and exits non-zero).
"""

from __future__ import annotations


class BridgeError(Exception):
    """A problem with input, configuration or a peer, explained in one line."""


class ConfigError(BridgeError):
    """Invalid configuration: a flag, an environment variable or a config file key."""


class FlowDecodeError(BridgeError):
    """A line or message that is not a valid Hubble flow event."""
