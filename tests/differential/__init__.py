"""Differential tests: user-mode instructions run on the host processor and in the
emulated core from the same state must leave the same registers, defined flags and
memory (the DESIGN's "checked against the real processor")."""
