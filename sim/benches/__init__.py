"""cocotb benches; each reads its configuration from the ``SPINEMU_BENCH`` environment variable."""
