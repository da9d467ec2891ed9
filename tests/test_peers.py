"""The peer book: offences and bans, known peers and liveness."""

import pytest
from libp2p.peer.id import ID

from node.peers import PeerBook

ME, A, B = ID(b"\x00me"), ID(b"\x00peer-a"), ID(b"\x00peer-b")


def book(cut: list[ID]) -> PeerBook:
    async def cut_off(peer: ID) -> None:
        cut.append(peer)

    return PeerBook(self_id=ME, invalid_max=3, ban_ms=1000, cut_off=cut_off)


@pytest.mark.trio
async def test_the_third_offence_bans_and_cuts_off_until_the_ban_ends() -> None:
    cut: list[ID] = []
    peers = book(cut)
    peers.learn(A, ("/ip4/127.0.0.1/tcp/1/p2p/a",), 0)
    assert not await peers.offend(A, "forged", 10)
    assert not await peers.offend(A, "forged", 20)
    assert await peers.offend(A, "forged", 30)
    assert cut == [A] and peers.bans == 1 and peers.offences == 3
    assert peers.is_banned(A, 1029) and not peers.is_banned(A, 1031)
    assert A not in peers.known()  # a banned peer is not dialled or placed


@pytest.mark.trio
async def test_our_own_messages_never_count_against_us() -> None:
    peers = book([])
    for t in range(5):
        assert not await peers.offend(ME, "bug", t)
    assert peers.offences == 0


def test_a_peer_is_live_while_seen_lately() -> None:
    peers = book([])
    peers.learn(A, ("/ip4/127.0.0.1/tcp/1/p2p/a",), 0)
    peers.learn(B, ("/ip4/127.0.0.1/tcp/2/p2p/b",), 0)
    peers.saw([A], 5000)
    assert peers.live(5500, 1000) == {A}
    assert peers.live(7000, 1000) == set()
    peers.learn(ME, ("/ip4/127.0.0.1/tcp/3",), 0)
    assert ME not in peers.known()
