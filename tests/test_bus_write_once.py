"""A publish whose reply is lost is retried without writing twice (security review, finding 9).

A real redis-server behind a small TCP relay that, once asked, lets a command reach Redis but drops
its reply and the connection, as a time-out or a network cut after the write would: the bus and the
Redis client both retry, and the stream must still hold the message once.
"""

from __future__ import annotations

import socket
import threading

from devstack.servers import LocalRedis
from shared.schemas import DetectionSet
from shared.stream_bus import StreamBus


class ReplyDropper:
    """TCP relay to Redis; with ``drop_next`` set, the next reply is swallowed and the client cut off."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.drop_next = threading.Event()
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.drop_next.is_set():
                    self.drop_next.clear()
                    self.dropped += 1
                    sink.shutdown(socket.SHUT_RDWR)
                    sink.close()
                    source.close()
                    return
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def _message(seq: int) -> DetectionSet:
    return DetectionSet(camera_id="c", seq=seq, frame_id=f"c-{seq}", capture_ts=1.0, width=4, height=4,
                        model="m", provider="p", latency_ms=1.0)


def test_a_publish_whose_reply_is_lost_is_written_once(redis_server: LocalRedis) -> None:
    relay = ReplyDropper(redis_server.port)
    bus = StreamBus(f"redis://127.0.0.1:{relay.port}/0")
    try:
        bus.publish("once", _message(1))  # warm: the connection (and any script) is set up
        bus.ensure_group("in", "g", "0")
        bus.publish("in", _message(2))
        [entry] = bus.read_group(["in"], "g", "c1", block_ms=100, start_id="0")
        relay.drop_next.set()
        bus.publish("once", _message(3))
        relay.drop_next.set()
        bus.publish_and_ack("once", _message(4), "in", "g", [entry.entry_id])
        assert relay.dropped == 2
        direct = StreamBus(redis_server.url)
        seqs = [e.message.seq for e in direct.read_all("once")]
        assert seqs == [1, 3, 4], f"a retried write was applied twice: {seqs}"
        assert direct.redis.xpending("in", "g")["pending"] == 0
    finally:
        relay.close()
        bus.redis.close()
