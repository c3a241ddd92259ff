"""The golden board behind the socket: :class:`~spinemu.sim.board.model.GoldenBoard` in a thread,
the exact answer bytes with no clock."""

from spinemu.hdl.protocol import WINDOW

from .base import ThreadServer
from .model import GoldenBoard

__all__ = ["GoldenServer"]


class GoldenServer(ThreadServer):
    """The golden board (:class:`~spinemu.sim.board.model.GoldenBoard`) behind the socket.

    It answers every byte as it comes, so nothing is left to send or queued when a client leaves;
    the flush (:class:`~spinemu.sim.board.base.Flush`) ends a frame the client left unfinished
    (its delimiter: a frame error) and is answered ABORTED, as by the design. With no clock there
    is nothing to settle: its answer must be the last of what the flush's bytes get."""

    backend = "golden"

    def __init__(self, config, max_payload, host, port, once, window=WINDOW):
        self.board = GoldenBoard(config, max_payload, window)
        super().__init__(config, max_payload, host, port, once, window)

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
            if not self.board.feed(self.flush.request).endswith(self.flush.answer):
                raise self.flush.failure(self.backend)
