"""The bit-exact golden model (numpy) and the simulation backends (Amaranth, cocotb on Verilog)."""
