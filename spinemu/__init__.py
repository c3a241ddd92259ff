"""spinemu: emulate stochastic spin neurons on FPGAs.

Subpackages: :mod:`spinemu.hdl` (Amaranth gateware), :mod:`spinemu.sim` (golden model and simulation
backends), :mod:`spinemu.firmware` (board tops and builds), :mod:`spinemu.host` (host library and CLI).
"""

__version__ = "0.1.0"
