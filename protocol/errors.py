"""Typed verdicts and errors of the protocol layer.

Validation functions raise :class:`Reject` when a message is invalid under the rules (its
sender misbehaved and may be penalised) and :class:`Ignore` when it is not acceptable now but
says nothing bad about its sender (a duplicate, a timestamp from the future).
"""


class ProtocolError(Exception):
    """Base class of every error raised by ``protocol/``."""


class DecodeError(ProtocolError):
    """Bytes that are not the canonical encoding of a value of the expected type."""


class InvalidCid(ProtocolError):
    """A content id that is malformed or of an unsupported kind."""


class Verdict(ProtocolError):
    """A validation outcome other than accept."""


class Reject(Verdict):
    """The message breaks a rule: drop it and penalise whoever sent it."""


class Ignore(Verdict):
    """The message is not acceptable now; drop it without penalty."""
