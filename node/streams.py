"""Small pieces every libp2p service here shares."""

import multiaddr
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.network.stream.exceptions import StreamEOF


async def read_some(stream: INetStream, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` from ``stream``; b"" at its end (py-libp2p raises StreamEOF)."""
    try:
        return await stream.read(max_bytes)
    except StreamEOF:
        return b""


class QuietNotifee(INotifee):
    """A network notifee that ignores every event; subclasses override what they need."""

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass
