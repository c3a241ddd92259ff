"""What goes on a board: top levels, builds with the open-source toolchain, resource reports."""
