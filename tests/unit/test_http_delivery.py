"""HTTP delivery accounting without sockets: which deltas' bytes the client's TCP acknowledged
(sidecar.ingress.http_delivery). The transport is a stand-in whose unacknowledged byte count
the test sets (no socket, so the kernel's share is 0)."""

from __future__ import annotations

from sidecar.ingress.http_delivery import HttpDelivery
from sidecar.ingress.transport import peer_was_answering


class Transport:
    def __init__(self) -> None:
        self.unacked = 0

    def get_write_buffer_size(self) -> int:
        return self.unacked

    def get_extra_info(self, name: str) -> None:
        return None


def framed(size: int) -> int:
    return len(b"%x\r\n" % size) + size + 2


def test_a_timeout_counts_only_what_was_acknowledged_by_the_last_sample() -> None:
    transport = Transport()
    delivery = HttpDelivery(transport)
    delivery.wrote(100, 1, now=0.0)  # the first write: not sampled (nothing acknowledged yet)
    assert delivery.delivered_deltas() is None  # still connected
    # The network dies: from here on every chunk stays unacknowledged.
    transport.unacked += framed(100)
    delivery.wrote(100, 2, now=0.1)  # not sampled (too soon)
    transport.unacked += framed(100)
    delivery.wrote(100, 3, now=1.2)  # sampled
    transport.unacked += framed(100)
    delivery.wrote(100, 4, now=1.35)
    delivery.lost(TimeoutError())
    assert delivery.received == framed(100)
    assert delivery.delivered_deltas() == 1


def test_the_first_write_is_not_sampled_the_next_after_a_second_is() -> None:
    """Sampling at a response's first write could only find nothing acknowledged: a system
    call per request for nothing (the SSE path's CPU per request)."""
    transport = Transport()
    delivery = HttpDelivery(transport)
    delivery.wrote(100, 1, now=5.0)
    assert delivery.acked == 0  # not sampled, though the stand-in has nothing unacknowledged
    delivery.wrote(100, 2, now=5.9)
    assert delivery.acked == 0
    delivery.wrote(100, 3, now=6.0)
    assert delivery.acked == 3 * framed(100)


def test_an_orderly_close_counts_what_left_the_transport() -> None:
    transport = Transport()
    delivery = HttpDelivery(transport)
    delivery.wrote(50, 1, now=0.0)
    for n in range(2, 6):
        delivery.wrote(50, n, now=0.1)
    transport.unacked = framed(50) * 2  # the last two chunks still in the transport's buffer
    delivery.lost(None)
    assert delivery.delivered_deltas() == 3
    delivery.lost(TimeoutError())  # the first word stands
    assert delivery.delivered_deltas() == 3


def test_a_reset_by_the_client_counts_what_left_the_transport_as_a_close_does() -> None:
    transport = Transport()
    delivery = HttpDelivery(transport)
    delivery.wrote(50, 1, now=0.0)
    transport.unacked = framed(50)  # as sampled, the second chunk was not acknowledged yet...
    delivery.wrote(50, 2, now=0.1)
    transport.unacked = 0  # ...but it left the buffer before the client reset the connection
    delivery.lost(ConnectionResetError())
    assert delivery.delivered_deltas() == 2


def test_marks_the_client_certainly_has_are_dropped_without_changing_the_answer() -> None:
    transport = Transport()
    delivery = HttpDelivery(transport)
    for n in range(1, 1001):
        delivery.wrote(40, n, now=n * 1.0)  # every write sampled, everything acknowledged
    assert len(delivery._marks) == 1
    transport.unacked = framed(40) * 3
    for n in range(1001, 1004):
        delivery.wrote(40, n, now=1000.0 + n)
    delivery.lost(TimeoutError())
    assert delivery.delivered_deltas() == 1000


def test_nothing_acknowledged_means_nothing_delivered() -> None:
    transport = Transport()
    delivery = HttpDelivery(transport)
    transport.unacked = 10_000
    delivery.wrote(100, 1, now=0.0)
    delivery.lost(TimeoutError())
    assert delivery.delivered_deltas() == 0


def test_how_a_connection_was_lost_decides_for_both_ingresses() -> None:
    assert peer_was_answering(None)  # a close
    assert peer_was_answering(ConnectionResetError()) and peer_was_answering(BrokenPipeError())
    assert not peer_was_answering(TimeoutError())  # TCP user timeout: the network died
    assert not peer_was_answering(OSError("no route"))
