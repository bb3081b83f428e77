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

    ubdcc_reader_close(reader);
    return 0;
}
