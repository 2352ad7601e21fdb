"""The local order book and Kraken's v2 CRC32 checksum, on the documentation's worked example."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triplegain_core.adapters.kraken.book import (
    BookChecksumError,
    InvalidBookError,
    KrakenBookLevel,
    KrakenBookTop,
    OrderBook,
    book_checksum,
    level_text,
)
from triplegain_core.adapters.kraken.encode import encode_book
from triplegain_core.adapters.kraken.messages import KrakenBookData, KrakenBookMessage
from triplegain_core.adapters.kraken.parse import parse_server_message

# The BTC/USD snapshot of Kraken's "Spot Websockets (v2) Book Checksum" guide
# (docs.kraken.com/api/docs/guides/spot-ws-book-v2), whose documented checksum is 3310070434.
DOC_SNAPSHOT = (
    '{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":['
    '{"price":45283.5,"qty":0.10000000},{"price":45283.4,"qty":1.54582015},'
    '{"price":45282.1,"qty":0.10000000},{"price":45281.0,"qty":0.10000000},'
    '{"price":45280.3,"qty":1.54592586},{"price":45279.0,"qty":0.07990000},'
    '{"price":45277.6,"qty":0.03310103},{"price":45277.5,"qty":0.30000000},'
    '{"price":45277.3,"qty":1.54602737},{"price":45276.6,"qty":0.15445238}],"asks":['
    '{"price":45285.2,"qty":0.00100000},{"price":45286.4,"qty":1.54571953},'
    '{"price":45286.6,"qty":1.54571109},{"price":45289.6,"qty":1.54560911},'
    '{"price":45290.2,"qty":0.15890660},{"price":45291.8,"qty":1.54553491},'
    '{"price":45294.7,"qty":0.04454749},{"price":45296.1,"qty":0.35380000},'
    '{"price":45297.5,"qty":0.09945542},{"price":45299.5,"qty":0.18772827}],'
    '"checksum":3310070434}]}'
)
DOC_CHECKSUM = 3310070434
# The guide's intermediate strings: the asks part and the bids part of the CRC32 input.
DOC_ASKS_TEXT = ("452852100000452864154571953452866154571109452896154560911452902158906604529181"
                 "54553491452947445474945296135380000452975994554245299518772827")
DOC_BIDS_TEXT = ("452835100000004528341545820154528211000000045281010000000452803154592586452790"
                 "799000045277633101034527753000000045277315460273745276615445238")


def _doc_book() -> tuple[OrderBook, KrakenBookMessage]:
    message = parse_server_message(DOC_SNAPSHOT)
    assert isinstance(message, KrakenBookMessage)
    book = OrderBook("BTC/USD", depth=10)
    data = message.books[0]
    book.apply_snapshot(data.bids, data.asks, data.checksum)
    return book, message


def test_documented_snapshot_gives_the_documented_checksum() -> None:
    book, message = _doc_book()
    assert message.books[0].checksum == DOC_CHECKSUM
    assert book.checksum() == DOC_CHECKSUM and book.valid
    asks_text = "".join(level_text(lv.price) + level_text(lv.qty) for lv in book.asks())
    bids_text = "".join(level_text(lv.price) + level_text(lv.qty) for lv in book.bids())
    assert (asks_text, bids_text) == (DOC_ASKS_TEXT, DOC_BIDS_TEXT)
    assert book.top() == KrakenBookTop("BTC/USD", Decimal("45283.5"), Decimal("0.10000000"),
                                   Decimal("45285.2"), Decimal("0.00100000"), 0)


def test_trailing_zeros_are_kept_from_the_wire() -> None:
    _, message = _doc_book()
    assert str(message.books[0].asks[0].qty) == "0.00100000"
    assert level_text(Decimal("0.00100000")) == "100000"
    assert level_text(Decimal("45285.2")) == "452852"
    assert level_text(Decimal("45281.0")) == "452810"


def test_update_delete_insert_and_truncate_to_depth() -> None:
    book, _ = _doc_book()
    # Delete the best bid, insert a better ask: the 11th ask falls out of the depth-10 book.
    bids = (KrakenBookLevel(Decimal("45283.5"), Decimal("0")),)
    asks = (KrakenBookLevel(Decimal("45284.0"), Decimal("2.00000000")),)
    new_bids = [lv for lv in book.bids() if lv.price != Decimal("45283.5")]
    new_asks = [asks[0], *book.asks()[:9]]
    expected = book_checksum(new_asks, new_bids)
    book.apply_update(bids, asks, expected, ts_us=5)
    assert book.asks() == new_asks and len(book.asks()) == 10
    assert book.bids() == new_bids
    assert book.top().bid == Decimal("45283.4") and book.top().ts_us == 5


def test_mismatch_invalidates_until_the_next_snapshot() -> None:
    book, message = _doc_book()
    with pytest.raises(BookChecksumError):
        book.apply_update((KrakenBookLevel(Decimal("45283.5"), Decimal("0.2")),), (), DOC_CHECKSUM)
    assert not book.valid
    with pytest.raises(InvalidBookError):
        book.top()
    with pytest.raises(InvalidBookError):
        book.apply_update((), (), DOC_CHECKSUM)
    data = message.books[0]
    book.apply_snapshot(data.bids, data.asks, data.checksum)
    assert book.valid and book.checksum() == DOC_CHECKSUM


def test_snapshot_with_a_wrong_checksum_is_refused() -> None:
    message = parse_server_message(DOC_SNAPSHOT.replace("3310070434", "3310070435"))
    data = message.books[0]
    book = OrderBook("BTC/USD")
    with pytest.raises(BookChecksumError):
        book.apply_snapshot(data.bids, data.asks, data.checksum)
    assert not book.valid


def test_depth_must_be_a_kraken_depth() -> None:
    with pytest.raises(ValueError):
        OrderBook("BTC/USD", depth=7)


_levels = st.lists(
    st.tuples(st.integers(1, 10**7), st.integers(0, 10**9), st.integers(0, 8)),
    max_size=30,
)


@settings(deadline=None)
@given(_levels, _levels, st.sampled_from([10, 25]))
def test_encoded_books_round_trip_with_their_checksum(bids: list, asks: list, depth: int) -> None:
    """Whatever levels an exchange sends, encoding then parsing keeps the exact text, and the
    receiving book agrees with the sender's checksum."""
    def levels(raw: list, best_high: bool) -> list[KrakenBookLevel]:
        unique = {Decimal(p).scaleb(-2): (Decimal(q).scaleb(-e)) for p, q, e in raw if q}
        ordered = sorted(unique.items(), reverse=best_high)[:depth]
        return [KrakenBookLevel(p, q) for p, q in ordered]

    bid_levels, ask_levels = levels(bids, True), levels(asks, False)
    checksum = book_checksum(ask_levels, bid_levels)
    frame = encode_book(KrakenBookData("XRP/USDT", tuple(bid_levels), tuple(ask_levels), checksum),
                        kind="snapshot")
    data = parse_server_message(frame).books[0]
    book = OrderBook("XRP/USDT", depth)
    book.apply_snapshot(data.bids, data.asks, data.checksum)
    assert [level_text(lv.qty) for lv in book.bids()] == [level_text(lv.qty) for lv in bid_levels]
    assert book.checksum() == checksum
