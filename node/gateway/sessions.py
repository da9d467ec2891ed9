"""Who may write through the web gateway: the owner's sign-in, the session cookie, and the
same-origin rule every write passes first.

The node prints a sign-in address at start, ``http://HOST:PORT/#signin=<token>``. The
page POSTs the token to ``/api/session`` and gets a session cookie (HttpOnly, so scripts
cannot read it; SameSite=Strict, so no other site's page sends it). Sessions live in
memory only: a restarted node has a new token and no sessions. Wrong tokens spend a small
budget that refills slowly, so the token cannot be guessed by trying (it is 256 random
bits anyway; the budget also keeps a local process from burning CPU on tries).

Writes must come from the app's own pages (docs/api.md, "Security"): the browser's
``Origin`` header must be this server's origin, or be absent with
``Sec-Fetch-Site: same-origin``. A page elsewhere cannot forge either header.
"""

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from node.httpserver import Refusal

SESSION_COOKIE = "toktok_session"
SESSION_BYTES = 32
TOKEN_CHARS_MAX = 256
"""A sign-in token longer than this is refused unread (the node's own is 43 characters)."""
SIGNIN_TRIES_BURST = 5
"""Wrong sign-in tokens accepted in a row before the node makes the next one wait."""
SIGNIN_TRY_REFILL_S = 2.0
"""After the burst: one more try per this many seconds."""
SAME_ORIGIN = "same-origin"


class AccessRefused(Refusal):
    """A request refused for who sent it or from where, with its HTTP ``status``
    (401 no session, 403 another origin, 400 a malformed token, 429 too many tries)."""


class Sessions:
    """The sign-in token and the signed-in sessions (at most ``sessions_max``)."""

    def __init__(
        self,
        token: str,
        *,
        sessions_max: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Raises ValueError for an empty token or a ``sessions_max`` below 1."""
        if not token or sessions_max < 1:
            raise ValueError("a sign-in token and room for one session at least")
        self._token = token.encode()
        self._sessions_max = sessions_max
        self._clock = clock
        # SHA-256 of each session id, oldest first: a lookup hashes what it is given first,
        # so its timing tells nothing about the ids held.
        self._sessions: OrderedDict[bytes, None] = OrderedDict()
        self._tries = float(SIGNIN_TRIES_BURST)
        self._tries_at = clock()

    def __len__(self) -> int:
        return len(self._sessions)

    def sign_in(self, given: object) -> str:
        """A new session id for the right token; the oldest session goes past the limit.

        Raises AccessRefused: 400 for a malformed token, 429 when wrong tries have spent the
        budget, 401 for a wrong token.
        """
        # [REJECT] The token is a short string.
        if not isinstance(given, str) or not 1 <= len(given) <= TOKEN_CHARS_MAX:
            raise AccessRefused(
                "token: the sign-in token the node printed at start (after #signin=)", 400
            )
        self._refill()
        # [REJECT] Too many wrong tokens lately.
        if self._tries < 1:
            wait_s = (1 - self._tries) * SIGNIN_TRY_REFILL_S
            raise AccessRefused(f"too many wrong sign-in tokens: try again in {wait_s:.0f} s", 429)
        # [REJECT] The token is not the node's (compared in constant time).
        if not hmac.compare_digest(given.encode(), self._token):
            self._tries -= 1
            raise AccessRefused(
                "wrong sign-in token: open the address the node printed at start", 401
            )
        session = secrets.token_urlsafe(SESSION_BYTES)
        self._sessions[_digest(session)] = None
        while len(self._sessions) > self._sessions_max:
            self._sessions.popitem(last=False)
        return session

    def signed_in(self, headers: dict[str, str]) -> bool:
        """Whether the request's cookie names a live session."""
        return any(_digest(s) in self._sessions for s in session_cookies(headers))

    def sign_out(self, headers: dict[str, str]) -> None:
        """End the session the request's cookie names (none: nothing to do)."""
        for session in session_cookies(headers):
            self._sessions.pop(_digest(session), None)

    def require(self, headers: dict[str, str]) -> None:
        """Raises AccessRefused (401) unless the request comes with a live session."""
        if not self.signed_in(headers):
            raise AccessRefused(
                "sign in first: open the address the node printed at start"
                " (http://HOST:PORT/#signin=...)",
                401,
            )

    def _refill(self) -> None:
        now = self._clock()
        gained = (now - self._tries_at) / SIGNIN_TRY_REFILL_S
        self._tries = min(float(SIGNIN_TRIES_BURST), self._tries + gained)
        self._tries_at = now


def _digest(session: str) -> bytes:
    return hashlib.sha256(session.encode()).digest()


def session_cookies(headers: dict[str, str]) -> list[str]:
    """The values of every ``toktok_session`` cookie the request carries."""
    found = []
    for part in headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == SESSION_COOKIE and value:
            found.append(value)
    return found


def set_cookie(session: str) -> str:
    """The Set-Cookie value that hands a browser its session."""
    return f"{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/"


def clear_cookie() -> str:
    """The Set-Cookie value that makes a browser forget its session."""
    return f"{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"


def check_not_cross_site(headers: dict[str, str]) -> None:
    """Raises AccessRefused (403) for a read another site's page made the browser send.

    Reads change nothing the owner sees, but some start work (a thumbnail fetched from the
    network) and their timing tells what the node holds; a browser marks requests with
    ``Sec-Fetch-Site``, and clients that are not browsers (curl, the CLI) send none.
    """
    site = headers.get("sec-fetch-site")
    # [REJECT] The browser says another site's or origin's page made the request.
    if site is not None and site not in (SAME_ORIGIN, "none"):
        raise AccessRefused(f"requests from other sites are refused (Sec-Fetch-Site: {site})", 403)


def check_same_origin(headers: dict[str, str]) -> None:
    """Raises AccessRefused (403) unless the request comes from this server's own pages."""
    host = headers.get("host", "").strip().lower()
    # [REJECT] A write names the server it is sent to (every HTTP/1.1 client does).
    if not host:
        raise AccessRefused("a write needs a Host header", 403)
    own = f"http://{host}"
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site")
    # [REJECT] The browser says the request comes from another site or origin.
    if site is not None and site != SAME_ORIGIN:
        raise AccessRefused(f"cross-origin writes are refused (Sec-Fetch-Site: {site})", 403)
    if origin is None:
        # [REJECT] Without Origin, only the browser's own same-origin mark vouches for it.
        if site != SAME_ORIGIN:
            raise AccessRefused(f"a write must come from the app's pages: send Origin: {own}", 403)
        return
    # [REJECT] The page that sent it is not one of ours.
    if origin.strip().lower() != own:
        raise AccessRefused(f"cross-origin writes are refused: Origin {origin!r} is not {own}", 403)
