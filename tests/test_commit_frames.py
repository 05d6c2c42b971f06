"""The commit process's side of the pipe: frames cut from whatever the reads return."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.commit_process import _frame, _FrameReader

values = st.recursive(
    st.none() | st.integers() | st.text(max_size=40) | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=4).map(tuple),
    max_leaves=12,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    parent, child = socket.socketpair()
    with parent, child:
        yield parent, child


@settings(max_examples=60, deadline=None)
# None is the reader's end-of-file; no frame the parent sends is None.
@given(
    messages=st.lists(values.filter(lambda v: v is not None), max_size=12), chunk=st.integers(1, 64)
)
def test_frames_arrive_whole_and_in_order_however_the_reads_split_them(
    messages: list[object], chunk: int
) -> None:
    parent, child = socket.socketpair()
    with parent, child:
        stream = b"".join(_frame(message) for message in messages)
        sender = threading.Thread(target=lambda: (parent.sendall(stream), parent.close()))
        sender.start()
        frames = _FrameReader(child, chunk=chunk)
        got = []
        while (message := frames.take()) is not None:
            got.append(message)
        sender.join()
    assert got == messages


def test_take_queued_is_empty_until_a_frame_begins_and_none_at_end_of_file(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    parent, child = pair
    frames = _FrameReader(child)
    with pytest.raises(queue.Empty):
        frames.take_queued()
    parent.sendall(_frame("one") + _frame("two"))
    assert frames.take_queued() == "one"
    assert frames.take_queued() == "two"  # already read along with the first
    with pytest.raises(queue.Empty):
        frames.take_queued()
    parent.close()
    assert frames.take_queued() is None


def test_a_frame_begun_is_waited_for_to_its_end(pair: tuple[socket.socket, socket.socket]) -> None:
    parent, child = pair
    whole = _frame(b"x" * 1000)
    parent.sendall(whole[:10])
    threading.Timer(0.05, parent.sendall, [whole[10:]]).start()
    assert _FrameReader(child).take_queued() == b"x" * 1000


def test_take_gives_up_after_its_timeout_when_nothing_comes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, child = pair
    frames = _FrameReader(child)
    with pytest.raises(queue.Empty):
        frames.take(0.01)
