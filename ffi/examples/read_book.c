/* read_book: print the top of one order book from a ubdcc cluster on this host.
 *
 *   gcc -O2 -I ffi/include ffi/examples/read_book.c target/release/libubdcc_ffi.a \
 *       -lpthread -ldl -lm -o read_book
 *   ./read_book default binance.com BTCUSDT 5
 */
#include <stdio.h>
#include <stdlib.h>

#include "ubdcc.h"

static int report(const char *what, ubdcc_status_t status) {
    fprintf(stderr, "%s: %s: %s\n", what, ubdcc_status_name(status), ubdcc_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s CLUSTER EXCHANGE MARKET [LEVELS]\n", argv[0]);
        return 2;
    }
    const char *exchange = argv[2], *market = argv[3];
    int64_t limit = argc > 4 ? atoll(argv[4]) : 5;
    if (limit < 0 || limit > 1000) {
        fprintf(stderr, "LEVELS must be 0..1000\n");
        return 2;
    }

    ubdcc_reader_t *reader = NULL;
    ubdcc_status_t status = ubdcc_reader_open(argv[1], &reader);
    if (status != UBDCC_OK) return report("open", status);

    ubdcc_level_t levels[1000];
    ubdcc_book_info_t info;
    size_t count = 0;
    status = ubdcc_get_asks(reader, exchange, market, &limit, NULL, levels, 1000, &count, &info);
    if (status != UBDCC_OK) {
        ubdcc_reader_close(reader);
        return report("get_asks", status);
    }
    printf("%s %s  last_update_id=%llu  bids=%u asks=%u  depth=%u\n", exchange, market,
           (unsigned long long)info.last_update_id, info.bid_count, info.ask_count, info.depth);
    for (size_t i = count; i-- > 0;) printf("  ask %16.8f  %16.8f\n", levels[i].price, levels[i].quantity);

    status = ubdcc_get_bids(reader, exchange, market, &limit, NULL, levels, 1000, &count, NULL);
    if (status != UBDCC_OK) {
        ubdcc_reader_close(reader);
        return report("get_bids", status);
    }
    for (size_t i = 0; i < count; i++) printf("  bid %16.8f  %16.8f\n", levels[i].price, levels[i].quantity);

    /* The best bid and ask alone: the slot header only, the cheapest read there is. */
    ubdcc_bbo_t bbo;
    status = ubdcc_bbo(reader, exchange, market, &bbo);
    if (status != UBDCC_OK) {
        ubdcc_reader_close(reader);
        return report("bbo", status);
    }
    if (bbo.has_bid && bbo.has_ask)
        printf("best bid %.8f  best ask %.8f  spread %.8f\n", bbo.bid.price, bbo.ask.price, bbo.ask.price - bbo.bid.price);

    /* Sleep (in the kernel, no spinning) until a version newer than the one read is published,
     * here for at most 1 s; pass the new stamp as last_seen to wait for the one after it. */
    uint64_t changes = 0;
    status = ubdcc_wait_for_update(reader, exchange, market, bbo.changes, 1000, &changes);
    if (status == UBDCC_OK)
        printf("changed: stamp %llu after %llu\n", (unsigned long long)changes, (unsigned long long)bbo.changes);
    else if (status == UBDCC_ERR_TIMEOUT)
        printf("unchanged for 1 s\n");
    else {
        ubdcc_reader_close(reader);
        return report("wait_for_update", status);
    }

    /* Both sides from ONE consistent read: the bids and asks are one version of the book. */
    static ubdcc_level_t bids[1000];
    size_t bid_count = 0, ask_count = 0;
    status = ubdcc_get_book(reader, exchange, market, &limit, NULL, bids, 1000, &bid_count, levels,
                            1000, &ask_count, &info);
    if (status != UBDCC_OK) {
        ubdcc_reader_close(reader);
        return report("get_book", status);
    }
    printf("book last_update_id=%llu bids=%zu asks=%zu\n", (unsigned long long)info.last_update_id,
           bid_count, ask_count);

    /* What buying 1.0 of the base asset costs, on one consistent read of the asks. */
    ubdcc_fill_t fill;
    status = ubdcc_fill_price(reader, exchange, market, UBDCC_BUY, UBDCC_AMOUNT_BASE, 1.0, &fill, &info);
    if (status != UBDCC_OK) {
        ubdcc_reader_close(reader);
        return report("fill_price", status);
    }
    printf("fill buy 1: average %.8f worst %.8f levels %u complete %u slippage %.3f bps\n",
           fill.average_price, fill.worst_price, fill.levels_used, fill.complete, fill.slippage_bps);

    /* Mid, spread, microprice, imbalance of the top 10, and the quantity within 10/50/100 bps. */
    const double bps[3] = {10, 50, 100};
    ubdcc_band_t bands[3];
    ubdcc_depth_stats_t stats;
    status = ubdcc_depth_stats(reader, exchange, market, 10, bps, 3, bands, &stats, NULL);
    if (status != UBDCC_OK) {
        ubdcc_reader_close(reader);
        return report("depth_stats", status);
    }
    if (stats.valid) {
        printf("stats mid %.8f spread %.8f microprice %.8f imbalance %.4f\n", stats.mid, stats.spread,
               stats.microprice, stats.imbalance);
        for (size_t i = 0; i < 3; i++)
            printf("band +-%g bps: bids %.8f asks %.8f%s\n", bands[i].bps, bands[i].bid_quantity,
                   bands[i].ask_quantity, bands[i].complete ? "" : " (at least)");
    }

    /* The best bid and ask of every book of the exchange, each with its own status. */
    ubdcc_bbo_entry_t entries[64];
    size_t books = 0;
    status = ubdcc_bbo_all(reader, exchange, entries, 64, &books);
    if (status != UBDCC_OK && status != UBDCC_ERR_BUFFER_TOO_SMALL) {
        ubdcc_reader_close(reader);
        return report("bbo_all", status);
    }
    for (size_t i = 0; i < books && i < 64; i++) {
        const ubdcc_bbo_entry_t *e = &entries[i];
        if (e->status == UBDCC_OK)
            printf("top %s %s bid %.8f ask %.8f\n", e->exchange, e->market, e->bbo.bid.price, e->bbo.ask.price);
        else
            printf("top %s %s %s\n", e->exchange, e->market, ubdcc_status_name(e->status));
    }

    ubdcc_reader_close(reader);
    return 0;
}
