"""What a request to the web gateway may carry: the fields of a body or a query, ids in a
path, the body's type, and the typed refusal when something is off.

Every field an endpoint takes is declared with its type and whether it is required; a field
it does not take is refused too, so a typo is an error rather than a setting ignored.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.httpserver import Refusal, Request
from protocol.accounts import InvalidAccount, account_from_text

_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGITS = re.compile(r"[0-9]{1,15}")

Fields = Mapping[str, tuple[type, bool]]
"""What a body or query takes: field name -> (str, int or list of str; required)."""


class ApiError(Refusal):
    """A request refused by the gateway itself, with its HTTP ``status``."""


@dataclass(frozen=True)
class Call:
    request: Request
    args: tuple[str, ...]
    body: dict[str, Any]
    """The JSON body of a JSON write, else {}."""

    def query(self, fields: Fields) -> dict[str, Any]:
        """The query's parameters, checked against ``fields``. Raises ApiError (400)."""
        values: dict[str, Any] = {}
        for name, text in self.request.query.items():
            kind = fields.get(name, (str, False))[0]
            if kind is int and not _DIGITS.fullmatch(text):
                raise ApiError(f"{name}: a whole number, not {text[:20]!r}")
            values[name] = int(text) if kind is int else text
        return checked(values, fields, "the query")

    def fields(self, fields: Fields) -> dict[str, Any]:
        """The JSON body's fields, checked against ``fields``. Raises ApiError (400)."""
        return checked(self.body, fields, "the body")


def checked(values: dict[str, Any], fields: Fields, where: str) -> dict[str, Any]:
    """``values`` when each is a field of ``fields`` of its type and none required is
    missing. Raises ApiError (400) naming the first field that is not."""
    for name in values:
        # [REJECT] Every field is one the endpoint takes.
        if name not in fields:
            takes = ", ".join(fields) or "nothing"
            raise ApiError(f"{where}: unknown field {name[:40]!r} (this takes: {takes})")
    for name, (kind, required) in fields.items():
        # [REJECT] Every required field is there, and every field has its type.
        if name not in values:
            if required:
                raise ApiError(f"{name}: required")
            continue
        value = values[name]
        if kind is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ApiError(f"{name}: a list of strings")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ApiError(f"{name}: a whole number")
        elif not isinstance(value, kind):
            raise ApiError(f"{name}: a string")
    return dict(values)


def video_id(text: str) -> bytes:
    """A full manifest id. Raises ApiError (400) for anything but 64 hex digits."""
    if not _HEX64.fullmatch(text):
        raise ApiError(f"a video id is 64 lower-case hex digits, not {text[:80]!r}")
    return bytes.fromhex(text)


def account_id(text: str) -> bytes:
    """An account from its text form. Raises ApiError (400) naming what is wrong."""
    try:
        return account_from_text(text)
    except InvalidAccount as exc:
        raise ApiError(f"account: {exc}") from exc


LIMIT: Fields = {"limit": (int, False)}
ACCOUNT_LIMIT: Fields = {"account": (str, False), "limit": (int, False)}
ACCOUNT: Fields = {"account": (str, False)}
TARGET: Fields = {"account": (str, True)}
VIDEO: Fields = {"id": (str, True)}
VIEW_FIELDS: Fields = {"id": (str, True), "watched_ms": (int, True)}
TIP_FIELDS: Fields = {"id": (str, True), "amount": (int, True), "token": (str, False)}
TRANSFER_FIELDS: Fields = {
    "to": (str, True),
    "amount": (int, True),
    "token": (str, False),
    "memo": (str, False),
}
TOKEN_FIELDS: Fields = {
    "symbol": (str, True),
    "name": (str, True),
    "supply": (int, True),
    "decimals": (int, False),
    "metadata": (str, False),
}
BUY_FIELDS: Fields = {"offer": (str, True), "amount": (int, True), "pay": (int, False)}
PUBLISH_FIELDS: Fields = {
    "title": (str, True),
    "description": (str, False),
    "tags": (list, False),
    "license": (str, False),
}


def check_content_type(request: Request, expected: str) -> None:
    """Raises ApiError (415) unless the body is declared as ``expected``: a cross-site
    form can only send form or text types, and a cross-site script sending JSON must ask
    first (a preflight this server never grants)."""
    declared = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    # [REJECT] The body's declared type is the one the endpoint takes.
    if declared != expected:
        raise ApiError(f"this write takes Content-Type: {expected}, not {declared!r}", 415)
