"""The human monitor (HMP): commands, their table and parsing, and its front ends."""
