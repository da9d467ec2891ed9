"""Rendezvous placement: the byte layout, determinism, stability under churn, balance."""

import hashlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.placement import rank, score, seeders, should_seed


def video(n: int) -> bytes:
    return hashlib.sha256(b"video %d" % n).digest()


def peer(n: int) -> bytes:
    # Shaped like a binary libp2p Ed25519 peer id: identity multihash of a protobuf key.
    return b"\x00\x24\x08\x01\x12\x20" + hashlib.sha256(b"peer %d" % n).digest()


PEERS = [peer(i) for i in range(20)]
VIDEOS = [video(i) for i in range(5000)]


def test_score_layout() -> None:
    v, p = video(1), peer(1)
    assert score(v, p) == hashlib.sha256(v + p).digest()
    by_hand = sorted(PEERS, key=lambda q: int.from_bytes(hashlib.sha256(v + q).digest(), "big"))
    assert rank(v, PEERS) == by_hand[::-1]


def test_vector() -> None:
    """A fixed case another implementation can check itself against."""
    v = bytes(range(32))
    peers = [b"\x01", b"\x02", b"\x03", b"\x04"]
    # Scores by `sha256sum`: 04 d26f08..., 03 944c53..., 01 8b44d9..., 02 572870...
    assert score(v, b"\x04").hex().startswith("d26f084f")
    assert [p.hex() for p in rank(v, peers)] == ["04", "03", "01", "02"]
    assert seeders(v, peers, r=2) == [b"\x04", b"\x03"]


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=12), st.randoms())
def test_order_of_input_does_not_matter(peers: list[bytes], rnd: object) -> None:
    shuffled = list(peers)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    v = video(7)
    assert rank(v, peers) == rank(v, shuffled) == rank(v, iter(shuffled))
    assert sorted(rank(v, peers)) == sorted(set(peers))
    for r in range(5):
        assert seeders(v, peers, r) == rank(v, peers)[:r]


def test_duplicates_count_once() -> None:
    assert seeders(video(1), [peer(1)] * 5 + [peer(2)], r=3) == rank(video(1), [peer(1), peer(2)])


def test_should_seed_counts_self_as_a_candidate() -> None:
    for v in VIDEOS[:200]:
        top = seeders(v, PEERS, 3)
        for p in PEERS:
            others = [q for q in PEERS if q != p]
            assert should_seed(p, v, others, 3) == (p in top)
            assert should_seed(p, v, PEERS, 3) == (p in top)
    assert should_seed(peer(99), video(1), [], 3)


@pytest.mark.parametrize(("video_id", "r"), [(b"\x00" * 31, 3), (b"\x00" * 33, 3), (video(1), -1)])
def test_invalid_arguments(video_id: bytes, r: int) -> None:
    with pytest.raises(ValueError):
        seeders(video_id, PEERS, r)


def assignments(peers: list[bytes], r: int = 3) -> list[set[bytes]]:
    return [set(seeders(v, peers, r)) for v in VIDEOS]


def test_adding_a_peer_moves_about_one_in_n_plus_one_seats() -> None:
    before = assignments(PEERS)
    newcomer = peer(100)
    after = assignments([*PEERS, newcomer])
    moved = 0
    for old, new in zip(before, after, strict=True):
        # Only the newcomer takes a seat, and it displaces exactly one seeder.
        assert new - old <= {newcomer}
        assert len(old - new) == len(new - old)
        moved += len(new - old)
    expected = len(VIDEOS) * 3 / (len(PEERS) + 1)  # r seats of n+1 per video
    assert abs(moved - expected) < 0.15 * expected


def test_removing_a_peer_moves_only_its_seats() -> None:
    before = assignments(PEERS)
    leaver = PEERS[5]
    after = assignments([p for p in PEERS if p != leaver])
    moved = 0
    for old, new in zip(before, after, strict=True):
        assert old - new <= {leaver}
        assert len(new - old) == len(old - new)
        moved += len(old - new)
    expected = len(VIDEOS) * 3 / len(PEERS)
    assert abs(moved - expected) < 0.15 * expected


@pytest.mark.parametrize(("n", "r"), [(20, 3), (7, 1), (50, 5)])
def test_balance(n: int, r: int) -> None:
    peers = [peer(i) for i in range(n)]
    load = Counter(p for v in VIDEOS for p in seeders(v, peers, r))
    expected = len(VIDEOS) * r / n
    assert set(load) == set(peers)
    # Binomial spread is about sqrt(expected); 15% is over four deviations in every case.
    assert all(abs(count - expected) < 0.15 * expected for count in load.values()), load


def test_deterministic() -> None:
    assert assignments(PEERS) == assignments(list(reversed(PEERS)))
