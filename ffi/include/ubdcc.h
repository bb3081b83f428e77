/*
 * ubdcc.h — read ubdcc order books from shared memory, from C.
 *
 * A ubdcc DepthCache node (DCN) publishes every book it maintains into a shared-memory segment
 * (/dev/shm/ubdcc.<cluster>.<dcn>). This library maps those segments read-only and returns a
 * consistent copy of any book in well under a microsecond, or an error when the book is not
 * synced or its writer is dead or hung: it never returns stale data silently.
 *
 * Link with -lubdcc_ffi (libubdcc_ffi.so or libubdcc_ffi.a built by `cargo build -p ubdcc-ffi`;
 * the static library also needs -lpthread -ldl -lm).
 *
 *     ubdcc_reader_t *reader;
 *     if (ubdcc_reader_open("default", &reader) != UBDCC_OK) { puts(ubdcc_last_error_message()); }
 *     ubdcc_level_t asks[10]; size_t n; int64_t limit = 10;
 *     ubdcc_status_t s = ubdcc_get_asks(reader, "binance.com", "BTCUSDT", &limit, NULL, asks, 10, &n, NULL);
 *     ...
 *     ubdcc_reader_close(reader);
 *
 * Thread safety: a reader handle must not be used by two threads at once; open one per thread.
 * Error messages are per thread and valid until the thread's next ubdcc_ call.
 *
 * This header is hand-written; ffi/tests/c_abi.rs compiles it with gcc and checks every struct
 * layout and UBDCC_LAYOUT_HASH against the Rust library, so a mismatch fails the build's tests.
 */
#ifndef UBDCC_H
#define UBDCC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fingerprint of the shared-memory layout below (see shm-layout/src/layout.rs). */
#define UBDCC_LAYOUT_HASH 0x4439001881aa14ddULL
#define UBDCC_LAYOUT_MAJOR 3
#define UBDCC_LAYOUT_MINOR 0

/* ---- status codes ------------------------------------------------------------------------- */

typedef enum ubdcc_status_t {
    UBDCC_OK = 0,
    UBDCC_ERR_NULL_ARGUMENT = 1,     /* a required pointer was NULL */
    UBDCC_ERR_INVALID_ARGUMENT = 2,  /* not UTF-8, bad cluster name, negative limit, NaN threshold */
    UBDCC_ERR_NOT_FOUND = 3,         /* no segment of the cluster on this host holds the book */
    UBDCC_ERR_OUT_OF_SYNC = 4,       /* the book is starting or out of sync: no levels served */
    UBDCC_ERR_WRITER_GONE = 5,       /* the DCN writing the book is gone (or its segment shrank) */
    UBDCC_ERR_WRITER_HUNG = 6,       /* the DCN's heartbeat stopped (hung or stopped) */
    UBDCC_ERR_CONTENDED = 7,         /* the book changed during every bounded read attempt */
    UBDCC_ERR_BUFFER_TOO_SMALL = 8,  /* output truncated to capacity; the count says how many */
    UBDCC_ERR_IO = 9,                /* a system call failed */
    UBDCC_ERR_INTERNAL = 10,         /* a bug in the library (caught panic) */
    UBDCC_ERR_TIMEOUT = 11           /* a wait ended: nothing newer than last_seen in time */
} ubdcc_status_t;

/* Message of the calling thread's last error ("" if none); never NULL. */
const char *ubdcc_last_error_message(void);

/* Static name of a status code, e.g. "UBDCC_ERR_NOT_FOUND" ("UBDCC_UNKNOWN_STATUS" for a value
 * that is not one); never NULL. */
const char *ubdcc_status_name(int status);

/* ---- book status -------------------------------------------------------------------------- */

#define UBDCC_BOOK_STARTING 1
#define UBDCC_BOOK_SYNCED 2
#define UBDCC_BOOK_OUT_OF_SYNC 3

#define UBDCC_REASON_UNSPECIFIED 0
#define UBDCC_REASON_GAP 1
#define UBDCC_REASON_DISCONNECTED 2
#define UBDCC_REASON_STREAM_SILENT 3
#define UBDCC_REASON_SERVER_SHUTDOWN 4
#define UBDCC_REASON_SNAPSHOT_FAILED 5
#define UBDCC_REASON_REFRESH 6
#define UBDCC_REASON_MALFORMED_MESSAGE 7
#define UBDCC_REASON_WRITER_FAULT 8
#define UBDCC_REASON_DELISTED 9
#define UBDCC_REASON_SUBSCRIPTION_REFUSED 10
#define UBDCC_REASON_BUFFER_OVERFLOW 11
#define UBDCC_REASON_CROSSED 12
#define UBDCC_REASON_IDS_BACKWARDS 13

/* ubdcc_book_info_t.freshness / ubdcc_bbo_t.freshness bits: where event_time_ms comes from
 * (0: the exchange's time of the last event applied). */
#define UBDCC_FRESHNESS_SNAPSHOT_TIME 1     /* the REST snapshot's own time; no event since */
#define UBDCC_FRESHNESS_NO_EXCHANGE_TIME 2  /* no exchange time known: not an exchange time */

/* One level, as doubles equal to parsing the exchange's decimal strings. */
typedef struct ubdcc_level_t {
    double price;
    double quantity;
} ubdcc_level_t;

/* A book's metadata, read in the same consistent section as its levels. */
typedef struct ubdcc_book_info_t {
    uint8_t status;            /* UBDCC_BOOK_* */
    uint8_t reason;            /* UBDCC_REASON_* when out of sync, else 0 */
    uint8_t reserved[2];
    uint32_t depth;            /* levels per side the book is complete to; 0 while unknown */
    uint64_t last_update_id;   /* last exchange update id applied */
    uint64_t event_time_ms;    /* exchange event time of the last event, Unix ms */
    uint64_t receive_time_ns;  /* when the DCN received it, Unix ns */
    uint64_t publish_time_ns;  /* when this version was published, Unix ns */
    uint32_t bid_count;
    uint32_t ask_count;
    uint32_t resyncs;
    uint32_t gaps;
    uint64_t updates;          /* publishes since the book was added */
    uint64_t generation;       /* slot generation */
    /* layout 3: */
    uint64_t changes;          /* change stamp of this version: last_seen for ubdcc_wait_for_update */
    /* these five are filled by ubdcc_book_info; the level reads leave them 0: */
    uint64_t verified_at_ms;   /* Unix ms of the last audit that proved the book; 0 = never */
    uint32_t audits;           /* audits run since the book was added */
    uint32_t audit_mismatches; /* audits that found the book different from the exchange's */
    uint64_t top_hash;         /* hash of the top 20 levels per side (ubdcc_shm::top_hash) */
    uint64_t top_hash_update_id; /* the update id top_hash was computed at; 0 = none yet */
    uint16_t freshness;        /* UBDCC_FRESHNESS_* bits */
    uint8_t reserved2[6];
} ubdcc_book_info_t;

/* A synced book's best bid and ask (ubdcc_bbo), from the same consistent read as its ids. */
typedef struct ubdcc_bbo_t {
    ubdcc_level_t bid;         /* best (highest) bid; zeros when has_bid is 0 */
    ubdcc_level_t ask;         /* best (lowest) ask; zeros when has_ask is 0 */
    uint8_t has_bid;           /* 1 when the bid side has a level */
    uint8_t has_ask;           /* 1 when the ask side has a level */
    uint8_t reserved[2];
    uint32_t depth;            /* levels per side the book is complete to; 0 while unknown */
    uint64_t last_update_id;   /* last exchange update id applied */
    uint64_t event_time_ms;    /* exchange event time of the last event, Unix ms */
    uint64_t receive_time_ns;  /* when the DCN received it, Unix ns */
    uint64_t publish_time_ns;  /* when this version was published, Unix ns */
    uint64_t generation;       /* slot generation */
    uint64_t changes;          /* change stamp of this version (layout 3) */
    uint16_t freshness;        /* UBDCC_FRESHNESS_* bits (layout 3) */
    uint8_t reserved2[6];
} ubdcc_bbo_t;

#define UBDCC_MAX_NAME_LEN 48
#define UBDCC_SEGMENT_NAME_CAPACITY 144

/* One replica of one book, from ubdcc_list_books. Strings are NUL-terminated. */
typedef struct ubdcc_book_entry_t {
    char exchange[UBDCC_MAX_NAME_LEN + 1];
    char market[UBDCC_MAX_NAME_LEN + 1];
    char segment[UBDCC_SEGMENT_NAME_CAPACITY];
    uint8_t status;            /* UBDCC_BOOK_*, or 0 when unreadable (dead or hung writer) */
    uint8_t reason;
} ubdcc_book_entry_t;

/* One book of the cluster, from ubdcc_bbo_all: its names (NUL-terminated copies) and its best
 * bid and ask, or why it is not served (then bbo is all zero: never a stale price). */
typedef struct ubdcc_bbo_entry_t {
    char exchange[UBDCC_MAX_NAME_LEN + 1];
    char market[UBDCC_MAX_NAME_LEN + 1];
    uint8_t book_status;       /* UBDCC_BOOK_* when read or not synced; 0 when unreadable */
    uint8_t reason;            /* UBDCC_REASON_* when out of sync, else 0 */
    ubdcc_status_t status;     /* UBDCC_OK, or what ubdcc_bbo would return for this book */
    ubdcc_bbo_t bbo;           /* valid when status == UBDCC_OK */
} ubdcc_bbo_entry_t;

/* ubdcc_fill_price's side: a buy walks the asks, a sell the bids. */
typedef enum ubdcc_fill_side_t { UBDCC_BUY = 0, UBDCC_SELL = 1 } ubdcc_fill_side_t;

/* ubdcc_fill_price's amount: a base-asset quantity (BTC of BTCUSDT) or a quote amount (USDT). */
typedef enum ubdcc_amount_kind_t { UBDCC_AMOUNT_BASE = 0, UBDCC_AMOUNT_QUOTE = 1 } ubdcc_amount_kind_t;

/* The price of a fill (ubdcc_fill_price). Slippage is in basis points against the best price,
 * positive when the average is worse. Prices are NaN when nothing could be filled. */
typedef struct ubdcc_fill_t {
    double average_price;      /* quote filled / base filled */
    double worst_price;        /* price of the last level used */
    double filled_quantity;    /* base */
    double filled_quote;
    double slippage_bps;
    uint32_t levels_used;
    uint8_t complete;          /* 1 when the whole amount was filled; 0 when the levels ran out */
    uint8_t reserved[3];
} ubdcc_fill_t;

/* Quantity within +-bps basis points of the mid (ubdcc_depth_stats). */
typedef struct ubdcc_band_t {
    double bps;
    double bid_quantity;       /* bids priced >= mid * (1 - bps / 1e4) */
    double ask_quantity;       /* asks priced <= mid * (1 + bps / 1e4) */
    uint8_t complete;          /* 1 when both sides hold a level beyond the band; 0: lower bounds */
    uint8_t reserved[7];
} ubdcc_band_t;

/* The shape of the top of a book (ubdcc_depth_stats). */
typedef struct ubdcc_depth_stats_t {
    double mid;                /* (best bid + best ask) / 2 */
    double spread;             /* best ask - best bid */
    double spread_bps;         /* spread in basis points of the mid */
    double microprice;         /* size-weighted mid of the best levels */
    double imbalance;          /* (bid - ask qty) / (bid + ask qty) over the top top_n levels */
    uint64_t top_n;
    uint8_t valid;             /* 0 when a side is empty: the doubles are NaN, the bands zero */
    uint8_t reserved[7];
} ubdcc_depth_stats_t;

/* ---- reading ------------------------------------------------------------------------------ */

typedef struct ubdcc_reader_t ubdcc_reader_t;

/* Opens a reader for every book of `cluster` on this host; a cluster without segments yet is
 * not an error (reads return UBDCC_ERR_NOT_FOUND until books appear). Only segments owned by
 * this process's effective uid, or by owners named in the environment variable
 * UBDCC_SHM_TRUST ("uid:1000,gid:2000"), that group and others may not write, are read; others
 * are ignored (`ubdcc shm list` says why). A bad UBDCC_SHM_TRUST is UBDCC_ERR_INVALID_ARGUMENT. */
ubdcc_status_t ubdcc_reader_open(const char *cluster, ubdcc_reader_t **out_reader);

/* Like ubdcc_reader_open, but also trusts the owners in `trust` (NULL or "uid:N,gid:N"). */
ubdcc_status_t ubdcc_reader_open_trusting(const char *cluster, const char *trust,
                                          ubdcc_reader_t **out_reader);

/* Closes a reader; NULL is ignored. */
void ubdcc_reader_close(ubdcc_reader_t *reader);

/* Reads the asks (lowest first) / bids (highest first) of a synced book.
 *
 * limit_count, threshold_volume: NULL means "not set"; semantics as the REST API's get_asks:
 *   the threshold walk always includes the first level and stops at the first level that would
 *   push the running price*quantity total above the threshold; then at most limit_count levels
 *   are kept (0 -> none). A negative limit or NaN threshold is UBDCC_ERR_INVALID_ARGUMENT.
 * levels, capacity: output array; with more levels than capacity, the first capacity are
 *   written and UBDCC_ERR_BUFFER_TOO_SMALL is returned.
 * out_count: number of levels selected (0 on any error but UBDCC_ERR_BUFFER_TOO_SMALL).
 * out_info: NULL, or receives the metadata from the same consistent read. */
ubdcc_status_t ubdcc_get_asks(ubdcc_reader_t *reader, const char *exchange, const char *market,
                              const int64_t *limit_count, const double *threshold_volume,
                              ubdcc_level_t *levels, size_t capacity, size_t *out_count,
                              ubdcc_book_info_t *out_info);
ubdcc_status_t ubdcc_get_bids(ubdcc_reader_t *reader, const char *exchange, const char *market,
                              const int64_t *limit_count, const double *threshold_volume,
                              ubdcc_level_t *levels, size_t capacity, size_t *out_count,
                              ubdcc_book_info_t *out_info);

/* Reads a book's metadata, synced or not. */
ubdcc_status_t ubdcc_book_info(ubdcc_reader_t *reader, const char *exchange, const char *market,
                               ubdcc_book_info_t *out_info);

/* Reads the best bid and ask of a synced book, reading only the book's slot header (two cache
 * lines, no level): the cheapest read there is. Errors as ubdcc_get_asks; out_bbo is untouched
 * on error. */
ubdcc_status_t ubdcc_bbo(ubdcc_reader_t *reader, const char *exchange, const char *market,
                         ubdcc_bbo_t *out_bbo);

/* Reads both sides of a synced book from ONE consistent read: bids and asks are one version of
 * the book, the one out_info->last_update_id names. limit_count and threshold_volume as in
 * ubdcc_get_asks, applied to each side on its own. A side with more levels selected than its
 * capacity is truncated and UBDCC_ERR_BUFFER_TOO_SMALL returned; the counts say how many. */
ubdcc_status_t ubdcc_get_book(ubdcc_reader_t *reader, const char *exchange, const char *market,
                              const int64_t *limit_count, const double *threshold_volume,
                              ubdcc_level_t *bids, size_t bid_capacity, size_t *out_bid_count,
                              ubdcc_level_t *asks, size_t ask_capacity, size_t *out_ask_count,
                              ubdcc_book_info_t *out_info);

/* The best bid and ask of every book of the cluster (exchange NULL) or of one exchange, one
 * entry per book, sorted by exchange and market; each entry's status says whether it was served.
 * With more books than capacity, the first capacity are written and UBDCC_ERR_BUFFER_TOO_SMALL
 * is returned; out_count says how many books there are. */
ubdcc_status_t ubdcc_bbo_all(ubdcc_reader_t *reader, const char *exchange,
                             ubdcc_bbo_entry_t *entries, size_t capacity, size_t *out_count);

/* The price of filling `amount` (base or quote, > 0) by a buy (walks the asks) or a sell (the
 * bids), computed on one consistent read of the whole side. A bad side, kind or amount is
 * UBDCC_ERR_INVALID_ARGUMENT. out_info: NULL, or the metadata of the version used. */
ubdcc_status_t ubdcc_fill_price(ubdcc_reader_t *reader, const char *exchange, const char *market,
                                ubdcc_fill_side_t side, ubdcc_amount_kind_t amount_kind,
                                double amount, ubdcc_fill_t *out_fill, ubdcc_book_info_t *out_info);

/* Mid, spread, microprice, the imbalance of the top top_n levels and the quantity within each of
 * band_count bands (+-bps[i] basis points of the mid, each > 0; results in out_bands[i]),
 * computed on one consistent read of both sides. */
ubdcc_status_t ubdcc_depth_stats(ubdcc_reader_t *reader, const char *exchange, const char *market,
                                 size_t top_n, const double *bps, size_t band_count,
                                 ubdcc_band_t *out_bands, ubdcc_depth_stats_t *out_stats,
                                 ubdcc_book_info_t *out_info);

/* Lists every replica of every book of the cluster, sorted by exchange, market, segment. */
ubdcc_status_t ubdcc_list_books(ubdcc_reader_t *reader, ubdcc_book_entry_t *entries,
                                size_t capacity, size_t *out_count);

/* ---- waiting for changes ------------------------------------------------------------------
 * The calling thread sleeps in the kernel (a futex in the segment, which the DCN wakes after
 * every write): no spinning, no write missed. Every write to a book (publish, status change,
 * removal) gives it a new change stamp, strictly increasing (`changes` in the structs above). */

/* Sleeps until the book is written after `last_seen` (the `changes` of your last read of it, or
 * 0), at most timeout_ms. UBDCC_OK: *out_changes holds the new stamp (> last_seen), at once when
 * the book already changed. UBDCC_ERR_TIMEOUT: nothing newer in time. Other errors as
 * ubdcc_book_info (also when the writer dies or hangs during the wait). */
ubdcc_status_t ubdcc_wait_for_update(ubdcc_reader_t *reader, const char *exchange,
                                     const char *market, uint64_t last_seen, uint64_t timeout_ms,
                                     uint64_t *out_changes);

/* Sleeps until any book of the cluster changed since this reader's previous call (the first
 * call: since the segments were created), at most timeout_ms: a write, a writer found dead or
 * hung, a segment appearing or going away. Then compare the `changes` of the books you follow
 * with your last reads. UBDCC_OK with the highest segment stamp, or UBDCC_ERR_TIMEOUT. */
ubdcc_status_t ubdcc_wait_for_any(ubdcc_reader_t *reader, uint64_t timeout_ms,
                                  uint64_t *out_changes);

/* The layout hash the library was built with; compare with UBDCC_LAYOUT_HASH. */
uint64_t ubdcc_layout_hash(void);

/* ---- the shared-memory layout ---------------------------------------------------------------
 * For reference and for the layout check; read books through the functions above. Every field
 * is accessed atomically; payload is protected by the `seq` words (a seqlock: even = stable). */

/* How words are packed, and the codes they hold (all covered by UBDCC_LAYOUT_HASH). */
#define UBDCC_SHM_PAIR_HIGH_SHIFT 32          /* rings: asks; sync_counters: gaps */
#define UBDCC_SHM_RING_HEAD_SHIFT 16          /* a ring: count bits 0..16, head bits 16..32 */
#define UBDCC_SHM_QUANTITY_EXPONENT_SHIFT 8   /* exponents: price is the low byte */
#define UBDCC_SHM_REASON_SHIFT 8              /* status: the book status is the low byte */
#define UBDCC_SHM_FRESHNESS_SHIFT 16          /* status: freshness bits 16..32 */
#define UBDCC_SHM_DEPTH_SHIFT 32              /* status: depth bits 32..64 */
#define UBDCC_SHM_TOP_HASH_LEVELS 20          /* levels per side top_hash covers */
#define UBDCC_SHM_STATE_INITIALIZING 0
#define UBDCC_SHM_STATE_READY 1
#define UBDCC_SHM_STATE_CLOSED 2
#define UBDCC_SHM_STATUS_EMPTY 0              /* a free slot; 1..3 are UBDCC_BOOK_* */

typedef struct ubdcc_shm_segment_header_t {
    uint64_t magic;              /* "UBDCCSHM" little-endian */
    uint32_t layout_major;
    uint32_t layout_minor;
    uint64_t layout_hash;
    uint64_t segment_size;
    uint32_t writer_pid;
    uint32_t state;              /* 0 initializing, 1 ready, 2 closed; stored last */
    uint64_t writer_start_time;  /* clock ticks since boot */
    uint64_t writer_epoch;       /* Unix ns of creation */
    uint64_t reserved0;
    uint64_t directory_offset;
    uint64_t slot_offset;
    uint64_t slot_size;
    uint32_t slot_count;
    uint32_t levels_per_side;
    uint64_t reserved1[4];
    uint64_t heartbeat_ns;       /* CLOCK_MONOTONIC_COARSE */
    uint64_t reserved2[7];
    uint64_t directory_version;
    uint64_t changes;            /* change stamp of the latest write to any book */
    uint32_t wake;               /* futex word: +1 after every write, then FUTEX_WAKE (shared) */
    uint32_t reserved3a;
    uint64_t reserved3[5];
} ubdcc_shm_segment_header_t;

typedef struct ubdcc_shm_directory_entry_t {
    uint64_t seq;
    uint64_t generation;
    uint64_t in_use;
    uint64_t exchange[6];        /* NUL-padded UTF-8 */
    uint64_t market[6];
    uint64_t reserved;
} ubdcc_shm_directory_entry_t;

typedef struct ubdcc_shm_slot_header_t {
    uint64_t seq;
    uint64_t generation;
    uint64_t status;             /* bits 0..8 book status, 8..16 reason, 16..32 freshness,
                                    32..64 levels per side the book is complete to (0: unknown) */
    uint64_t last_update_id;
    uint64_t event_time_ms;
    uint64_t receive_time_ns;
    uint64_t publish_time_ns;
    uint64_t rings;              /* bits 0..32 bid ring, 32..64 ask ring; a ring is its count
                                    (bits 0..16) and head (16..32): best-first level i of a
                                    side is its level (head + i) % levels_per_side */
    uint64_t exponents;          /* bits 0..8 price exponent, 8..16 quantity exponent (int8) */
    uint64_t sync_counters;      /* bits 0..32 resyncs, 32..64 gaps */
    uint64_t updates;
    uint64_t changes;            /* change stamp: CLOCK_MONOTONIC_COARSE ns of the publish,
                                    strictly increasing over the segment */
    uint64_t best_bid_price;     /* mantissas of the best bid and ask (0 when a side is empty) */
    uint64_t best_bid_quantity;
    uint64_t best_ask_price;
    uint64_t best_ask_quantity;
    uint32_t wake;               /* futex word: +1 after every write, then FUTEX_WAKE (shared) */
    uint32_t reserved2a;
    uint64_t verified_at_ms;
    uint64_t audit_counters;     /* bits 0..32 audits, 32..64 audit mismatches */
    uint64_t top_hash;
    uint64_t top_hash_update_id;
    uint64_t reserved2[3];
} ubdcc_shm_slot_header_t;       /* followed by bids[levels_per_side], asks[levels_per_side] (rings) */

typedef struct ubdcc_shm_level_t {
    uint64_t price;              /* mantissa */
    uint64_t quantity;           /* mantissa */
} ubdcc_shm_level_t;

#ifdef __cplusplus
}
#endif

#endif /* UBDCC_H */
