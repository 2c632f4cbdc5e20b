"""Bulk acknowledgements: what the broker is told, for deliveries settled in any order."""

from __future__ import annotations

import random
from typing import Any

from worker.runtime.acks import Acks


class RecordingChannel:
    """Records the frames a channel would send (the algorithm under test is pure bookkeeping)."""

    def __init__(self) -> None:
        self.frames: list[tuple[Any, ...]] = []
        self.is_closed = False

    def ack(self, tag: int, *, multiple: bool = False) -> None:
        self.frames.append(("ack", tag, multiple))

    def reject(self, tag: int, *, requeue: bool) -> None:
        self.frames.append(("reject", tag, requeue))


def test_a_settled_run_is_acknowledged_with_one_frame() -> None:
    channel, acks = RecordingChannel(), Acks(max_held=100)
    for tag in range(1, 6):
        acks.delivered(channel, tag)
    for tag in (3, 1, 2, 5, 4):
        acks.ack(channel, tag)
    acks.flush()
    assert channel.frames == [("ack", 5, True)]


def test_a_straggler_holds_back_only_up_to_the_limit() -> None:
    channel, acks = RecordingChannel(), Acks(max_held=3)
    for tag in range(1, 7):
        acks.delivered(channel, tag)
    for tag in (2, 3, 4):
        acks.ack(channel, tag)
    acks.flush()
    assert channel.frames == []  # 1 is still running
    acks.ack(channel, 5)
    acks.flush()
    assert channel.frames == [("ack", 2, False), ("ack", 3, False), ("ack", 4, False), ("ack", 5, False)]
    acks.ack(channel, 1)
    acks.ack(channel, 6)
    acks.flush()
    assert channel.frames[-1] == ("ack", 6, True)  # covers 1 and 6; 2-5 are no longer outstanding


def test_a_rejected_delivery_is_never_the_target_of_a_multiple_ack() -> None:
    channel, acks = RecordingChannel(), Acks(max_held=100)
    for tag in (1, 2, 3):
        acks.delivered(channel, tag)
    acks.ack(channel, 1)
    acks.reject(channel, 3, requeue=True)
    acks.flush()
    assert channel.frames == [("reject", 3, True), ("ack", 1, True)]
    acks.ack(channel, 2)
    acks.flush()
    assert channel.frames[-1] == ("ack", 2, True)


def test_a_new_channel_starts_fresh() -> None:
    old, new, acks = RecordingChannel(), RecordingChannel(), Acks(max_held=100)
    acks.delivered(old, 1)
    acks.delivered(old, 2)
    old.is_closed = True  # reconnect: tags start again on the new channel
    acks.delivered(new, 1)
    acks.ack(new, 1)
    acks.flush()
    assert new.frames == [("ack", 1, True)] and old.frames == []


def test_settling_in_any_order_never_sends_a_lower_target_after_a_higher_one() -> None:
    channel, acks = RecordingChannel(), Acks(max_held=1000)
    for tag in range(1, 101):
        acks.delivered(channel, tag)
    for tag in random.Random(7).sample(range(1, 101), 100):
        acks.ack(channel, tag)  # type: ignore[arg-type]
        acks.flush()
    targets = [tag for _, tag, multiple in channel.frames if multiple]
    assert targets == sorted(targets) and targets[-1] == 100
