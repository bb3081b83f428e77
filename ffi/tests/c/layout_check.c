/* Prints every size and offset the Rust side relies on, one "name value" per line, for
 * tests/c_abi.rs to compare with the Rust layout. Built with -Wall -Werror. */
#include <inttypes.h>
#include <stdio.h>

#include "ubdcc.h"

#define SIZE(type) printf("sizeof %s %zu\n", #type, sizeof(type))
#define OFF(name, type, field) printf("%s %zu\n", name, offsetof(type, field))

int main(void) {
    /* the shared-memory layout, named as in shm-layout/src/layout.rs */
    printf("SegmentHeader %zu\n", sizeof(ubdcc_shm_segment_header_t));
    OFF("magic", ubdcc_shm_segment_header_t, magic);
    OFF("layout_major", ubdcc_shm_segment_header_t, layout_major);
    OFF("layout_minor", ubdcc_shm_segment_header_t, layout_minor);
    OFF("layout_hash", ubdcc_shm_segment_header_t, layout_hash);
    OFF("segment_size", ubdcc_shm_segment_header_t, segment_size);
    OFF("writer_pid", ubdcc_shm_segment_header_t, writer_pid);
    OFF("state", ubdcc_shm_segment_header_t, state);
    OFF("writer_start_time", ubdcc_shm_segment_header_t, writer_start_time);
    OFF("writer_epoch", ubdcc_shm_segment_header_t, writer_epoch);
    OFF("directory_offset", ubdcc_shm_segment_header_t, directory_offset);
    OFF("slot_offset", ubdcc_shm_segment_header_t, slot_offset);
    OFF("slot_size", ubdcc_shm_segment_header_t, slot_size);
    OFF("slot_count", ubdcc_shm_segment_header_t, slot_count);
    OFF("levels_per_side", ubdcc_shm_segment_header_t, levels_per_side);
    OFF("heartbeat_ns", ubdcc_shm_segment_header_t, heartbeat_ns);
    OFF("directory_version", ubdcc_shm_segment_header_t, directory_version);
    OFF("changes", ubdcc_shm_segment_header_t, changes);
    OFF("wake", ubdcc_shm_segment_header_t, wake);
    printf("DirectoryEntry %zu\n", sizeof(ubdcc_shm_directory_entry_t));
    OFF("entry.seq", ubdcc_shm_directory_entry_t, seq);
    OFF("entry.generation", ubdcc_shm_directory_entry_t, generation);
    OFF("entry.in_use", ubdcc_shm_directory_entry_t, in_use);
    OFF("entry.exchange", ubdcc_shm_directory_entry_t, exchange);
    OFF("entry.market", ubdcc_shm_directory_entry_t, market);
    printf("SlotHeader %zu\n", sizeof(ubdcc_shm_slot_header_t));
    OFF("slot.seq", ubdcc_shm_slot_header_t, seq);
    OFF("slot.generation", ubdcc_shm_slot_header_t, generation);
    OFF("slot.status", ubdcc_shm_slot_header_t, status);
    OFF("slot.last_update_id", ubdcc_shm_slot_header_t, last_update_id);
    OFF("slot.event_time_ms", ubdcc_shm_slot_header_t, event_time_ms);
    OFF("slot.receive_time_ns", ubdcc_shm_slot_header_t, receive_time_ns);
    OFF("slot.publish_time_ns", ubdcc_shm_slot_header_t, publish_time_ns);
    OFF("slot.rings", ubdcc_shm_slot_header_t, rings);
    OFF("slot.exponents", ubdcc_shm_slot_header_t, exponents);
    OFF("slot.sync_counters", ubdcc_shm_slot_header_t, sync_counters);
    OFF("slot.updates", ubdcc_shm_slot_header_t, updates);
    OFF("slot.changes", ubdcc_shm_slot_header_t, changes);
    OFF("slot.best_bid_price", ubdcc_shm_slot_header_t, best_bid_price);
    OFF("slot.best_bid_quantity", ubdcc_shm_slot_header_t, best_bid_quantity);
    OFF("slot.best_ask_price", ubdcc_shm_slot_header_t, best_ask_price);
    OFF("slot.best_ask_quantity", ubdcc_shm_slot_header_t, best_ask_quantity);
    OFF("slot.wake", ubdcc_shm_slot_header_t, wake);
    OFF("slot.verified_at_ms", ubdcc_shm_slot_header_t, verified_at_ms);
    OFF("slot.audit_counters", ubdcc_shm_slot_header_t, audit_counters);
    OFF("slot.top_hash", ubdcc_shm_slot_header_t, top_hash);
    OFF("slot.top_hash_update_id", ubdcc_shm_slot_header_t, top_hash_update_id);
    printf("LevelWords %zu\n", sizeof(ubdcc_shm_level_t));
    OFF("level.price", ubdcc_shm_level_t, price);
    OFF("level.quantity", ubdcc_shm_level_t, quantity);

    /* packing and codes, named as in layout.rs */
    printf("pack.pair_high_shift %d\n", UBDCC_SHM_PAIR_HIGH_SHIFT);
    printf("pack.quantity_exponent_shift %d\n", UBDCC_SHM_QUANTITY_EXPONENT_SHIFT);
    printf("pack.reason_shift %d\n", UBDCC_SHM_REASON_SHIFT);
    printf("pack.freshness_shift %d\n", UBDCC_SHM_FRESHNESS_SHIFT);
    printf("pack.depth_shift %d\n", UBDCC_SHM_DEPTH_SHIFT);
    printf("freshness.snapshot_time %d\n", UBDCC_FRESHNESS_SNAPSHOT_TIME);
    printf("freshness.no_exchange_time %d\n", UBDCC_FRESHNESS_NO_EXCHANGE_TIME);
    printf("top_hash.levels %d\n", UBDCC_SHM_TOP_HASH_LEVELS);
    printf("pack.ring_head_shift %d\n", UBDCC_SHM_RING_HEAD_SHIFT);
    printf("state.initializing %d\n", UBDCC_SHM_STATE_INITIALIZING);
    printf("state.ready %d\n", UBDCC_SHM_STATE_READY);
    printf("state.closed %d\n", UBDCC_SHM_STATE_CLOSED);
    printf("status.empty %d\n", UBDCC_SHM_STATUS_EMPTY);
    printf("status.starting %d\n", UBDCC_BOOK_STARTING);
    printf("status.synced %d\n", UBDCC_BOOK_SYNCED);
    printf("status.out_of_sync %d\n", UBDCC_BOOK_OUT_OF_SYNC);

    /* the API structs */
    SIZE(ubdcc_level_t);
    OFF("ubdcc_level_t.quantity", ubdcc_level_t, quantity);
    SIZE(ubdcc_book_info_t);
    OFF("ubdcc_book_info_t.reason", ubdcc_book_info_t, reason);
    OFF("ubdcc_book_info_t.depth", ubdcc_book_info_t, depth);
    OFF("ubdcc_book_info_t.last_update_id", ubdcc_book_info_t, last_update_id);
    OFF("ubdcc_book_info_t.event_time_ms", ubdcc_book_info_t, event_time_ms);
    OFF("ubdcc_book_info_t.receive_time_ns", ubdcc_book_info_t, receive_time_ns);
    OFF("ubdcc_book_info_t.publish_time_ns", ubdcc_book_info_t, publish_time_ns);
    OFF("ubdcc_book_info_t.bid_count", ubdcc_book_info_t, bid_count);
    OFF("ubdcc_book_info_t.ask_count", ubdcc_book_info_t, ask_count);
    OFF("ubdcc_book_info_t.resyncs", ubdcc_book_info_t, resyncs);
    OFF("ubdcc_book_info_t.gaps", ubdcc_book_info_t, gaps);
    OFF("ubdcc_book_info_t.updates", ubdcc_book_info_t, updates);
    OFF("ubdcc_book_info_t.generation", ubdcc_book_info_t, generation);
    OFF("ubdcc_book_info_t.changes", ubdcc_book_info_t, changes);
    OFF("ubdcc_book_info_t.verified_at_ms", ubdcc_book_info_t, verified_at_ms);
    OFF("ubdcc_book_info_t.audits", ubdcc_book_info_t, audits);
    OFF("ubdcc_book_info_t.audit_mismatches", ubdcc_book_info_t, audit_mismatches);
    OFF("ubdcc_book_info_t.top_hash", ubdcc_book_info_t, top_hash);
    OFF("ubdcc_book_info_t.top_hash_update_id", ubdcc_book_info_t, top_hash_update_id);
    OFF("ubdcc_book_info_t.freshness", ubdcc_book_info_t, freshness);
    SIZE(ubdcc_bbo_t);
    OFF("ubdcc_bbo_t.ask", ubdcc_bbo_t, ask);
    OFF("ubdcc_bbo_t.has_bid", ubdcc_bbo_t, has_bid);
    OFF("ubdcc_bbo_t.has_ask", ubdcc_bbo_t, has_ask);
    OFF("ubdcc_bbo_t.depth", ubdcc_bbo_t, depth);
    OFF("ubdcc_bbo_t.last_update_id", ubdcc_bbo_t, last_update_id);
    OFF("ubdcc_bbo_t.event_time_ms", ubdcc_bbo_t, event_time_ms);
    OFF("ubdcc_bbo_t.receive_time_ns", ubdcc_bbo_t, receive_time_ns);
    OFF("ubdcc_bbo_t.publish_time_ns", ubdcc_bbo_t, publish_time_ns);
    OFF("ubdcc_bbo_t.generation", ubdcc_bbo_t, generation);
    OFF("ubdcc_bbo_t.changes", ubdcc_bbo_t, changes);
    OFF("ubdcc_bbo_t.freshness", ubdcc_bbo_t, freshness);
    SIZE(ubdcc_book_entry_t);
    OFF("ubdcc_book_entry_t.market", ubdcc_book_entry_t, market);
    OFF("ubdcc_book_entry_t.segment", ubdcc_book_entry_t, segment);
    OFF("ubdcc_book_entry_t.status", ubdcc_book_entry_t, status);
    OFF("ubdcc_book_entry_t.reason", ubdcc_book_entry_t, reason);
    SIZE(ubdcc_status_t);
    SIZE(ubdcc_bbo_entry_t);
    OFF("ubdcc_bbo_entry_t.market", ubdcc_bbo_entry_t, market);
    OFF("ubdcc_bbo_entry_t.book_status", ubdcc_bbo_entry_t, book_status);
    OFF("ubdcc_bbo_entry_t.reason", ubdcc_bbo_entry_t, reason);
    OFF("ubdcc_bbo_entry_t.status", ubdcc_bbo_entry_t, status);
    OFF("ubdcc_bbo_entry_t.bbo", ubdcc_bbo_entry_t, bbo);
    SIZE(ubdcc_fill_t);
    OFF("ubdcc_fill_t.worst_price", ubdcc_fill_t, worst_price);
    OFF("ubdcc_fill_t.filled_quantity", ubdcc_fill_t, filled_quantity);
    OFF("ubdcc_fill_t.filled_quote", ubdcc_fill_t, filled_quote);
    OFF("ubdcc_fill_t.slippage_bps", ubdcc_fill_t, slippage_bps);
    OFF("ubdcc_fill_t.levels_used", ubdcc_fill_t, levels_used);
    OFF("ubdcc_fill_t.complete", ubdcc_fill_t, complete);
    SIZE(ubdcc_band_t);
    OFF("ubdcc_band_t.bid_quantity", ubdcc_band_t, bid_quantity);
    OFF("ubdcc_band_t.ask_quantity", ubdcc_band_t, ask_quantity);
    OFF("ubdcc_band_t.complete", ubdcc_band_t, complete);
    SIZE(ubdcc_depth_stats_t);
    OFF("ubdcc_depth_stats_t.spread", ubdcc_depth_stats_t, spread);
    OFF("ubdcc_depth_stats_t.spread_bps", ubdcc_depth_stats_t, spread_bps);
    OFF("ubdcc_depth_stats_t.microprice", ubdcc_depth_stats_t, microprice);
    OFF("ubdcc_depth_stats_t.imbalance", ubdcc_depth_stats_t, imbalance);
    OFF("ubdcc_depth_stats_t.top_n", ubdcc_depth_stats_t, top_n);
    OFF("ubdcc_depth_stats_t.valid", ubdcc_depth_stats_t, valid);
    /* the enums are passed as int: they must be int-sized */
    printf("sizeof ubdcc_fill_side_t %zu\n", sizeof(ubdcc_fill_side_t));
    printf("sizeof ubdcc_amount_kind_t %zu\n", sizeof(ubdcc_amount_kind_t));
    printf("UBDCC_BUY %d\n", (int)UBDCC_BUY);
    printf("UBDCC_SELL %d\n", (int)UBDCC_SELL);
    printf("UBDCC_AMOUNT_BASE %d\n", (int)UBDCC_AMOUNT_BASE);
    printf("UBDCC_AMOUNT_QUOTE %d\n", (int)UBDCC_AMOUNT_QUOTE);

    printf("UBDCC_LAYOUT_HASH %" PRIu64 "\n", (uint64_t)UBDCC_LAYOUT_HASH);
    printf("ubdcc_layout_hash() %" PRIu64 "\n", ubdcc_layout_hash());
    printf("UBDCC_LAYOUT_MAJOR %d\n", UBDCC_LAYOUT_MAJOR);
    printf("UBDCC_LAYOUT_MINOR %d\n", UBDCC_LAYOUT_MINOR);
    printf("UBDCC_OK %d\n", (int)UBDCC_OK);
    printf("UBDCC_ERR_NULL_ARGUMENT %d\n", (int)UBDCC_ERR_NULL_ARGUMENT);
    printf("UBDCC_ERR_INVALID_ARGUMENT %d\n", (int)UBDCC_ERR_INVALID_ARGUMENT);
    printf("UBDCC_ERR_NOT_FOUND %d\n", (int)UBDCC_ERR_NOT_FOUND);
    printf("UBDCC_ERR_OUT_OF_SYNC %d\n", (int)UBDCC_ERR_OUT_OF_SYNC);
    printf("UBDCC_ERR_WRITER_GONE %d\n", (int)UBDCC_ERR_WRITER_GONE);
    printf("UBDCC_ERR_WRITER_HUNG %d\n", (int)UBDCC_ERR_WRITER_HUNG);
    printf("UBDCC_ERR_CONTENDED %d\n", (int)UBDCC_ERR_CONTENDED);
    printf("UBDCC_ERR_BUFFER_TOO_SMALL %d\n", (int)UBDCC_ERR_BUFFER_TOO_SMALL);
    printf("UBDCC_ERR_IO %d\n", (int)UBDCC_ERR_IO);
    printf("UBDCC_ERR_INTERNAL %d\n", (int)UBDCC_ERR_INTERNAL);
    printf("UBDCC_ERR_TIMEOUT %d\n", (int)UBDCC_ERR_TIMEOUT);
    printf("UBDCC_REASON_UNSPECIFIED %d\n", UBDCC_REASON_UNSPECIFIED);
    printf("UBDCC_REASON_GAP %d\n", UBDCC_REASON_GAP);
    printf("UBDCC_REASON_DISCONNECTED %d\n", UBDCC_REASON_DISCONNECTED);
    printf("UBDCC_REASON_STREAM_SILENT %d\n", UBDCC_REASON_STREAM_SILENT);
    printf("UBDCC_REASON_SERVER_SHUTDOWN %d\n", UBDCC_REASON_SERVER_SHUTDOWN);
    printf("UBDCC_REASON_SNAPSHOT_FAILED %d\n", UBDCC_REASON_SNAPSHOT_FAILED);
    printf("UBDCC_REASON_REFRESH %d\n", UBDCC_REASON_REFRESH);
    printf("UBDCC_REASON_MALFORMED_MESSAGE %d\n", UBDCC_REASON_MALFORMED_MESSAGE);
    printf("UBDCC_REASON_WRITER_FAULT %d\n", UBDCC_REASON_WRITER_FAULT);
    printf("UBDCC_REASON_DELISTED %d\n", UBDCC_REASON_DELISTED);
    printf("UBDCC_REASON_SUBSCRIPTION_REFUSED %d\n", UBDCC_REASON_SUBSCRIPTION_REFUSED);
    printf("UBDCC_REASON_BUFFER_OVERFLOW %d\n", UBDCC_REASON_BUFFER_OVERFLOW);
    return 0;
}
