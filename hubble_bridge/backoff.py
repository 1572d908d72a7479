"""Exponential backoff with jitter: the one formula for the project's retries and reconnections.

tenacity's wait_exponential_jitter computes it (the OTLP exporter uses it inside tenacity's Retrying);
loops that count their own attempts call `backoff_s`.
"""

from __future__ import annotations

from tenacity import wait_exponential_jitter


class _Attempt:
    """The part of tenacity's RetryCallState that its wait strategies read."""

    def __init__(self, attempt: int) -> None:
        self.attempt_number = attempt


def backoff(initial_s: float, max_s: float, jitter_s: float = 0.0) -> wait_exponential_jitter:
    """initial_s doubling per attempt, at most max_s, plus a uniform jitter of up to jitter_s.

    Jitter keeps many bridges that lost the same peer from coming back in step.
    """
    return wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=jitter_s)


def backoff_s(attempt: int, initial_s: float, max_s: float, jitter_s: float = 0.0) -> float:
    """The delay before retry number `attempt` (1 for the first)."""
    return float(backoff(initial_s, max_s, jitter_s)(_Attempt(attempt)))  # type: ignore[arg-type]
