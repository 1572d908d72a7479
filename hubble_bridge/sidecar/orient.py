"""Which side opened a conversation, so both directions of a 5-tuple become one flow, oriented once.

XDP counts each direction under its own key. A conversation's two keys are
merged into one flow whose source is the side that opened it: the sender of a
SYN without ACK, or the connecting side of a TCP connect/accept event, both
remembered across intervals. Without either, an ephemeral port (Linux's
default range starts at 32768) against a lower one marks the client, and
is_reply stays unknown; failing that, the sender of the earliest packet is the source.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from hubble_bridge.sidecar.records import (
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    XdpSample,
)

Side = tuple[str, int]  # (address, port)
ConversationKey = tuple[int, Side, Side]  # (protocol, lower side, higher side)
EPHEMERAL_PORT_START = 32768
_PORTED = frozenset({IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP})


def conversation(protocol: int, a: Side, b: Side) -> ConversationKey:
    return (protocol, a, b) if a <= b else (protocol, b, a)


class Initiators:
    """A bounded memory of who opened which conversation (least recently used forgotten first)."""

    def __init__(self, capacity: int = 65536) -> None:
        self._capacity = capacity
        self._known: OrderedDict[ConversationKey, Side] = OrderedDict()

    def learn(self, protocol: int, initiator: Side, responder: Side) -> None:
        key = conversation(protocol, initiator, responder)
        self._known[key] = initiator
        self._known.move_to_end(key)
        if len(self._known) > self._capacity:
            self._known.popitem(last=False)

    def get(self, protocol: int, a: Side, b: Side) -> Side | None:
        key = conversation(protocol, a, b)
        found = self._known.get(key)
        if found is not None:
            self._known.move_to_end(key)
        return found

    def __len__(self) -> int:
        return len(self._known)


@dataclass(slots=True)
class Conversation:
    """One flow's worth of XDP samples: `forward` went source -> destination, `reverse` back."""

    forward: XdpSample | None
    reverse: XdpSample | None
    source: Side
    destination: Side
    known: bool  # orientation learned (is_reply can be set), not guessed

    @property
    def any(self) -> XdpSample:
        sample = self.forward or self.reverse
        assert sample is not None
        return sample


def pair_samples(samples: list[XdpSample], initiators: Initiators) -> list[Conversation]:
    """Merge each sample with its reverse direction (same interface), oriented initiator -> responder."""
    by_key: dict[tuple[int, int, Side, Side], XdpSample] = {}
    single: list[XdpSample] = []
    for sample in samples:
        if sample.protocol in _PORTED:
            side_a = (sample.source, sample.source_port)
            side_b = (sample.destination, sample.destination_port)
            by_key[(sample.ifindex, sample.protocol, side_a, side_b)] = sample
        else:
            single.append(sample)
    conversations: list[Conversation] = []
    done: set[tuple[int, int, Side, Side]] = set()
    for key, sample in by_key.items():
        if key in done:
            continue
        ifindex, protocol, side_a, side_b = key
        reverse_key = (ifindex, protocol, side_b, side_a)
        reverse = by_key.get(reverse_key)
        done.update((key, reverse_key))
        conversations.append(_orient(sample, reverse, initiators))
    for sample in single:
        sides = ((sample.source, sample.source_port), (sample.destination, sample.destination_port))
        conversations.append(Conversation(sample, None, sides[0], sides[1], known=False))
    return conversations


def _orient(a: XdpSample, b: XdpSample | None, initiators: Initiators) -> Conversation:
    side_a = (a.source, a.source_port)
    side_b = (a.destination, a.destination_port)
    opener: Side | None = None
    if a.opened and not (b and b.opened):
        opener = side_a
    elif b is not None and b.opened and not a.opened:
        opener = side_b
    if opener is not None:
        initiators.learn(a.protocol, opener, side_b if opener == side_a else side_a)
    else:
        opener = initiators.get(a.protocol, side_a, side_b)
    if opener is not None:
        if opener == side_a:
            return Conversation(a, b, side_a, side_b, known=True)
        return Conversation(b, a, side_b, side_a, known=True)
    ephemeral_a = a.source_port >= EPHEMERAL_PORT_START
    ephemeral_b = a.destination_port >= EPHEMERAL_PORT_START
    # Failing the ports, the earliest sender.
    a_opened = ephemeral_a if ephemeral_a != ephemeral_b else (b is None or a.first_ns <= b.first_ns)
    if a_opened:
        return Conversation(a, b, side_a, side_b, known=False)
    return Conversation(b, a, side_b, side_a, known=False)
