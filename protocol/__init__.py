"""The rules every toktok node agrees on.

Types, canonical encoding, signatures, validation and the sans-IO state machines of the
protocols we own. Nothing here performs I/O, reads a clock or draws global randomness:
time comes in as ``now_ms`` and randomness as an ``rng`` argument.
"""
