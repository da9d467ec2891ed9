"""The wire format of the standing-offer protocol, ``/toktok/offer/1.0.0``.

The node named by an offer's ``peer`` serves it. A fan's node opens a stream and writes
:class:`OfferRequest` frames; the shop's node answers each, in order, with one
:class:`OfferResponse` echoing the request's ``id``. Frames are framed as on the ledger
protocol: a 4-byte big-endian body length, then the canonical msgpack body
(protocol/chunkwire.py's FrameDecoder reads them). docs/protocol.md section 14.

Operations, both naming the offer by its id (its message id):

- ``quote``: no proposal. The answer gives the shop's next sequence number (``seq``) and
  what it holds of the token for sale (``stock``).
- ``fill``: ``proposal`` is a swap signed by the fan alone (protocol.orders.propose_swap):
  leg ``a`` the fan paying in the price token, leg ``b`` the shop giving the token, its
  ``offer`` the offer's id. The shop's node checks it (protocol/offers.py), co-signs it,
  gets it certified and answers with the certificate's bytes, or refuses with a code and
  a reason. STALE_SEQUENCE means: quote again and propose anew.
"""

from dataclasses import dataclass

from protocol.certs import CERTIFICATE_BYTES_MAX
from protocol.chunkwire import length_prefixed
from protocol.codec import U64_MAX, encode_record, fit_text, fld
from protocol.errors import DecodeError
from protocol.kinds import MESSAGE_ID_LEN
from protocol.orders import AMOUNT_MAX, SEQ_MAX, SIGNED_ORDER_BYTES_MAX

PROTOCOL_ID = "/toktok/offer/1.0.0"
REASON_BYTES_MAX = 200

QUOTE = "quote"
FILL = "fill"
OPS = (QUOTE, FILL)

# Response statuses. Plain ints: the canonical encoder packs exact types only.
OK = 0
BAD_REQUEST = 1
"""The request broke a rule of this protocol; the stream is closed after the answer."""
UNKNOWN_OFFER = 2
"""This node fills no offer of that id."""
CLOSED = 3
"""The creator closed the offer."""
EXPIRED = 4
"""The offer's ``expires_ms`` has passed by the shop's clock."""
INVALID = 5
"""The proposal is not a fill of this offer (wrong legs, tokens, signature, network)."""
OVER_AMOUNT_MAX = 6
PRICE_TOO_LOW = 7
STALE_SEQUENCE = 8
"""The proposal names a shop sequence number other than its next: quote again."""
SOLD_OUT = 9
"""The shop holds less of the token than the fill asks for."""
FAN_FUNDS = 10
"""The fan's balance, as the shop's replica knows it, does not cover the price."""
LEDGER_REFUSED = 11
"""The validators did not certify the swap (the reason says why)."""
BUSY = 12
"""The shop's node has too many fills under way; try again later."""
STATUS_MAX = BUSY
STATUS_NAMES = {
    OK: "ok",
    BAD_REQUEST: "bad_request",
    UNKNOWN_OFFER: "unknown_offer",
    CLOSED: "closed",
    EXPIRED: "expired",
    INVALID: "invalid",
    OVER_AMOUNT_MAX: "over_amount_max",
    PRICE_TOO_LOW: "price_too_low",
    STALE_SEQUENCE: "stale_sequence",
    SOLD_OUT: "sold_out",
    FAN_FUNDS: "fan_funds",
    LEDGER_REFUSED: "ledger_refused",
    BUSY: "busy",
}


@dataclass(frozen=True)
class OfferRequest:
    id: int = fld(value_max=U64_MAX)
    op: str = fld(len_min=1, len_max=8)
    offer: bytes = fld(len_min=MESSAGE_ID_LEN, len_max=MESSAGE_ID_LEN)
    proposal: bytes = fld(len_max=SIGNED_ORDER_BYTES_MAX)
    """A fill's swap, signed by the fan alone (SignedOrderWire bytes); empty for a quote."""


@dataclass(frozen=True)
class OfferResponse:
    id: int = fld(value_max=U64_MAX)
    status: int = fld(value_max=STATUS_MAX)
    reason: str = fld(len_max=REASON_BYTES_MAX)
    seq: int = fld(value_max=SEQ_MAX)
    """The shop's next sequence number (a quote's answer; 0 otherwise)."""
    stock: int = fld(value_max=AMOUNT_MAX)
    """What the shop holds of the token for sale (a quote's answer; 0 otherwise)."""
    certificate: bytes = fld(len_max=CERTIFICATE_BYTES_MAX)
    """The fill's certificate (a fill's answer with status OK; empty otherwise)."""


REQUEST_BODY_BYTES_MAX = SIGNED_ORDER_BYTES_MAX + 128
RESPONSE_BODY_BYTES_MAX = CERTIFICATE_BYTES_MAX + REASON_BYTES_MAX + 128


def check_request(request: OfferRequest) -> None:
    """The rules of a request beyond its field limits. Raises :class:`DecodeError`."""
    # [REJECT] The operation is quote or fill.
    if request.op not in OPS:
        raise DecodeError(f"unknown offer operation {request.op[:8]!r}")
    # [REJECT] A fill carries a proposal and a quote none.
    if (request.op == FILL) != bool(request.proposal):
        raise DecodeError(
            f"a {request.op} request with a proposal of {len(request.proposal)} bytes"
        )


def check_response(response: OfferResponse) -> None:
    """The rules of a response beyond its field limits. Raises :class:`DecodeError`."""
    # [REJECT] A response carries a certificate only with status OK.
    if response.certificate and response.status != OK:
        raise DecodeError("a refusal carries a certificate")


def encode_frame(record: OfferRequest | OfferResponse) -> bytes:
    """The frame of ``record``: its body length (4 bytes, big-endian), then the body."""
    body = encode_record(record)
    limit = REQUEST_BODY_BYTES_MAX if isinstance(record, OfferRequest) else RESPONSE_BODY_BYTES_MAX
    assert len(body) <= limit, "the field limits keep a frame within the body limit"
    return length_prefixed(body)


def reason_text(text: str) -> str:
    """``text`` cut to fit a response's reason field."""
    return fit_text(text, REASON_BYTES_MAX)
