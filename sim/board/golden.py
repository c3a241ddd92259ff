"""The golden board behind the socket: :class:`~spinemu.sim.board.model.GoldenBoard` in a thread,
the exact answer bytes with no clock."""

from .base import ThreadServer
from .model import GoldenBoard

__all__ = ["GoldenServer"]


class GoldenServer(ThreadServer):
    """The golden board (:class:`~spinemu.sim.board.model.GoldenBoard`) behind the socket."""

    backend = "golden"

    def __init__(self, config, max_payload, host, port, once):
        self.board = GoldenBoard(config, max_payload)
        super().__init__(config, max_payload, host, port, once)

    def _serve(self):
        while self.link.accept():
            while True:
                data = self.link.wait_data()
                if not data:
                    break
                answer = self.board.feed(data)
                if answer:
                    self.link.send(answer)
            self.link.drop()
            if self.once or self._stop.is_set():
                break
