"""Amaranth 0.5 gateware: LFSRs, Gaussian noise, spin neurons and the blocks built from them."""
