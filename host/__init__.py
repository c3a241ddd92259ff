"""The host library and the ``spinemu`` command line."""
