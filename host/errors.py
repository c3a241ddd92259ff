"""The host library's errors: what the command line reports as one line, never as a traceback.

Library modules raise these (or the gateware formats' own :class:`~spinemu.hdl.model_image.
ModelError`); only :mod:`spinemu.host.cli` turns them into messages and exit statuses.
"""

__all__ = ["SpinemuError", "InputError", "LinkError", "ProtocolError"]


class SpinemuError(Exception):
    """An error the user can act on; the message says what and where."""


class InputError(SpinemuError, ValueError):
    """Bad input: a file, an argument or data that cannot be used as given."""


class LinkError(SpinemuError, ConnectionError):
    """The link to a design failed: it could not be opened, it closed, or a request got no valid
    answer after every retry. The message names the URL, the request and what went wrong."""


class ProtocolError(SpinemuError):
    """The design refused a request (``status`` is its :class:`~spinemu.hdl.protocol.Status`) or
    answered something inconsistent (``status`` is None). The message names the request."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status
