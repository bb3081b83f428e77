"""Read ubdcc's shared-memory order books from Python (type stubs of the compiled module)."""

import builtins
from collections.abc import Iterable
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
    """A negative limit_count or a NaN threshold_volume."""

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
    def info(self, exchange: str, market: str) -> _BookInfo:
        """The metadata of a book, synced or not."""
    def list(self) -> builtins.list[_BookListing]:
        """Every book of every segment of the cluster, one dict per replica."""
    def ignored(self) -> builtins.list[_IgnoredSegment]:
        """Segments not read because they are not trusted, with the reason."""
    def refresh(self) -> None:
        """Rescans the cluster's segments and rebuilds the book index."""
