"""Read ubdcc's shared-memory order books from Python (type stubs of the compiled module)."""

import builtins
from collections.abc import Iterable, Sequence
from typing import Optional, TypedDict, Union, final

__version__: str
__all__ = [
    "Reader",
    "UbdccError",
    "DepthCacheNotFound",
    "DepthCacheOutOfSync",
    "WriterGone",
    "WriterHung",
    "ReadContended",
    "InvalidQuery",
    "__version__",
]

_Levels = list[list[float]]
"""``[[price, quantity], ...]``, best first."""

class _BookInfo(TypedDict):
    status: str
    reason: Optional[str]
    last_update_id: int
    event_time_ms: int
    receive_time_ns: int
    publish_time_ns: int
    age_ms: Optional[float]
    bid_count: int
    ask_count: int
    resyncs: int
    gaps: int
    updates: int
    depth: int
    """Levels per side the book is complete to; 0 while unknown (starting)."""
    changes: int
    """The change stamp of this version: ``last_seen`` for :meth:`Reader.wait_for_update`."""
    freshness: builtins.list[str]
    """Where ``event_time_ms`` comes from: ``"snapshot_time"``, ``"no_exchange_time"``; empty: the last event's time."""
    verified_at_ms: int
    """Unix ms of the last audit that proved the book; 0 = never."""
    audits: int
    audit_mismatches: int
    top_hash: int
    """Hash of the top 20 levels per side (``ubdcc_shm::top_hash``) at ``top_hash_update_id``."""
    top_hash_update_id: int

class _Bbo(TypedDict):
    bid: Optional[builtins.list[float]]
    """[price, quantity] of the best (highest) bid; None when the bid side is empty."""
    ask: Optional[builtins.list[float]]
    """[price, quantity] of the best (lowest) ask; None when the ask side is empty."""
    last_update_id: int
    event_time_ms: int
    receive_time_ns: int
    publish_time_ns: int
    depth: int
    changes: int
    freshness: builtins.list[str]

class _Book(TypedDict):
    """Both sides from one consistent read: one version of the book, ``last_update_id``'s."""
    bids: _Levels
    asks: _Levels
    last_update_id: int
    event_time_ms: int
    receive_time_ns: int
    publish_time_ns: int
    age_ms: Optional[float]
    depth: int
    changes: int

class _Fill(TypedDict):
    side: str
    """``"buy"`` (walks the asks) or ``"sell"`` (walks the bids)."""
    average_price: Optional[float]
    """Quote filled / base filled; None when nothing could be filled."""
    worst_price: Optional[float]
    filled_quantity: float
    filled_quote: float
    complete: bool
    """False when the book's levels ran out before the amount was filled."""
    slippage_bps: Optional[float]
    """Basis points the average is worse than the best price."""
    levels_used: int
    last_update_id: int
    event_time_ms: int
    receive_time_ns: int
    publish_time_ns: int
    age_ms: Optional[float]
    depth: int
    changes: int

class _Band(TypedDict):
    bps: float
    bid_quantity: float
    ask_quantity: float
    complete: bool
    """False when the levels end inside the band: the quantities are lower bounds."""

class _DepthStats(TypedDict):
    mid: Optional[float]
    """None (like the other statistics) when a side is empty."""
    spread: Optional[float]
    spread_bps: Optional[float]
    microprice: Optional[float]
    imbalance: Optional[float]
    top_n: int
    bands: builtins.list[_Band]
    last_update_id: int
    event_time_ms: int
    receive_time_ns: int
    publish_time_ns: int
    age_ms: Optional[float]
    depth: int
    changes: int

class _BookListing(TypedDict):
    exchange: str
    market: str
    segment: str
    status: str
    error: Optional[str]

class _IgnoredSegment(TypedDict):
    segment: str
    reason: str

class UbdccError(Exception):
    """Base class of every error a ubdcc_local read raises."""

class DepthCacheNotFound(UbdccError):
    """No segment of the cluster on this host holds the book."""

class DepthCacheOutOfSync(UbdccError):
    """The book exists but is not synced; its levels are not served."""

class WriterGone(UbdccError):
    """The DCN process writing the book's segment is gone."""

class WriterHung(UbdccError):
    """The DCN process writing the book's segment is alive but its heartbeat stopped."""

class ReadContended(UbdccError):
    """The book changed during every one of the bounded read attempts."""

class InvalidQuery(UbdccError):
    """A negative limit_count or a NaN threshold_volume; a bad side, amount, top_n or band."""

@final
class Reader:
    """Reads order books of a ubdcc cluster from shared memory on this host.

    Only segments of this user, or of owners named in ``UBDCC_SHM_TRUST`` or ``trust`` (both
    ``"uid:1000,gid:2000"``), that group and others may not write are read; ``ignored()`` lists
    the others with the reason.

    Raises ``ValueError`` for an invalid cluster name or trust setting.
    """

    def __new__(cls, cluster: str = "default", trust: Optional[str] = None) -> Reader: ...
    @property
    def cluster(self) -> str: ...
    def get_asks(
        self,
        exchange: str,
        market: str,
        limit_count: Optional[int] = None,
        threshold_volume: Optional[float] = None,
    ) -> _Levels:
        """The asks of a synced book, lowest price first."""
    def get_bids(
        self,
        exchange: str,
        market: str,
        limit_count: Optional[int] = None,
        threshold_volume: Optional[float] = None,
    ) -> _Levels:
        """The bids of a synced book, highest price first."""
    def get_asks_many(
        self,
        books: Iterable[tuple[str, str]],
        limit_count: Optional[int] = None,
        threshold_volume: Optional[float] = None,
    ) -> builtins.list[Union[_Levels, UbdccError]]:
        """The asks of many books; a failed book's item is the exception instance."""
    def get_bids_many(
        self,
        books: Iterable[tuple[str, str]],
        limit_count: Optional[int] = None,
        threshold_volume: Optional[float] = None,
    ) -> builtins.list[Union[_Levels, UbdccError]]:
        """The bids of many books; a failed book's item is the exception instance."""
    def bbo(self, exchange: str, market: str) -> _Bbo:
        """The best bid and ask of a synced book, from its slot header alone."""
    def get_book(
        self,
        exchange: str,
        market: str,
        limit_count: Optional[int] = None,
        threshold_volume: Optional[float] = None,
    ) -> _Book:
        """Both sides of a synced book from one consistent read, each side selected on its own."""
    def bbo_all(self, exchange: Optional[str] = None) -> dict[str, dict[str, Union[_Bbo, UbdccError]]]:
        """``{exchange: {market: bbo}}`` for every book; a book not served maps to the exception instance."""
    def fill_price(
        self,
        exchange: str,
        market: str,
        side: str,
        quantity: Optional[float] = None,
        quote_quantity: Optional[float] = None,
    ) -> _Fill:
        """The price of a fill (``side`` ``"buy"`` or ``"sell"``, exactly one amount) on one consistent read."""
    def depth_stats(
        self,
        exchange: str,
        market: str,
        top_n: int = 10,
        bps: Sequence[float] = (10, 50, 100),
    ) -> _DepthStats:
        """Mid, spread, microprice, imbalance of the top ``top_n`` and quantity within ``±bps`` of the mid."""
    def info(self, exchange: str, market: str) -> _BookInfo:
        """The metadata of a book, synced or not."""
    def list(self) -> builtins.list[_BookListing]:
        """Every book of every segment of the cluster, one dict per replica."""
    def ignored(self) -> builtins.list[_IgnoredSegment]:
        """Segments not read because they are not trusted, with the reason."""
    def refresh(self) -> None:
        """Rescans the cluster's segments and rebuilds the book index."""
    def wait_for_update(self, exchange: str, market: str, last_seen: int, timeout_s: float) -> Optional[int]:
        """Sleeps (GIL released, no spinning) until the book is written after the change stamp
        ``last_seen`` and returns its new stamp (> ``last_seen``); ``None`` on timeout."""
    def wait_for_any(self, timeout_s: float) -> Optional[int]:
        """Sleeps (GIL released) until any book of the cluster changed since this reader's
        previous call; the highest segment change stamp, or ``None`` on timeout."""
