/* torture_reader: validate millions of reads of `ubdcc shm test-pattern` books.
 *
 *   torture_reader CLUSTER BOOKS READS LEVELS_PER_SIDE
 *
 * Reads PATTERN0..PATTERN{BOOKS-1} round-robin, alternating asks and bids, every 8th read the
 * whole side (up to 1000 levels), else the top 10, and checks each read against the pattern of
 * the version it reports (info.last_update_id): a read mixing two versions fails the check.
 * Prints "reads=N torn=T contended=C not_synced=S other=O" and exits 1 if T or O > 0.
 * The pattern is documented in shm-layout/src/test_pattern.rs. */
#include <stdio.h>
#include <stdlib.h>

#include "ubdcc.h"

static size_t level_count(uint64_t k, uint64_t levels_per_side) {
    uint64_t n = 500 + k % 500;
    return (size_t)(n < levels_per_side ? n : levels_per_side);
}

/* 0 when `levels` is exactly version k's (asks if is_ask, else bids); else 1. */
static int check(uint64_t k, int is_ask, const ubdcc_level_t *levels, size_t count, size_t expected) {
    if (count != expected) return 1;
    uint64_t a = k % 1000000;
    for (size_t i = 0; i < count; i++) {
        double price = is_ask ? (double)(100000 + a % 1000 + i) : (double)(99000 - a % 1000 - i);
        double quantity = (double)(a * 1000 + i) / 1000.0;
        if (levels[i].price != price || levels[i].quantity != quantity) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s CLUSTER BOOKS READS LEVELS_PER_SIDE\n", argv[0]);
        return 2;
    }
    int books = atoi(argv[2]);
    long long reads = atoll(argv[3]);
    uint64_t levels_per_side = strtoull(argv[4], NULL, 10);
    if (books < 1 || reads < 0 || levels_per_side < 1 || levels_per_side > 5000) {
        fprintf(stderr, "BOOKS >= 1, READS >= 0 and 1 <= LEVELS_PER_SIDE <= 5000\n");
        return 2;
    }
    ubdcc_reader_t *reader = NULL;
    if (ubdcc_reader_open(argv[1], &reader) != UBDCC_OK) {
        fprintf(stderr, "open: %s\n", ubdcc_last_error_message());
        return 2;
    }
    static ubdcc_level_t levels[5000];
    long long torn = 0, contended = 0, not_synced = 0, other = 0;
    char market[32];
    for (long long r = 0; r < reads; r++) {
        snprintf(market, sizeof market, "PATTERN%d", (int)(r % books));
        int is_ask = (r / books) % 2 == 0;
        int whole = r % 8 == 7;
        int64_t limit = 10;
        size_t count = 0;
        ubdcc_book_info_t info;
        ubdcc_status_t s = is_ask
            ? ubdcc_get_asks(reader, "binance.com", market, whole ? NULL : &limit, NULL, levels, 5000, &count, &info)
            : ubdcc_get_bids(reader, "binance.com", market, whole ? NULL : &limit, NULL, levels, 5000, &count, &info);
        if (s == UBDCC_ERR_CONTENDED) { contended++; continue; }
        if (s == UBDCC_ERR_OUT_OF_SYNC) { not_synced++; continue; }
        if (s != UBDCC_OK) {
            if (other++ < 5) fprintf(stderr, "read %lld: %s: %s\n", r, ubdcc_status_name(s), ubdcc_last_error_message());
            continue;
        }
        size_t full = level_count(info.last_update_id, levels_per_side);
        size_t expected = whole ? full : (full < 10 ? full : 10);
        if (check(info.last_update_id, is_ask, levels, count, expected)) {
            if (torn++ < 5) fprintf(stderr, "torn read %lld at version %llu\n", r, (unsigned long long)info.last_update_id);
        }
    }
    ubdcc_reader_close(reader);
    printf("reads=%lld torn=%lld contended=%lld not_synced=%lld other=%lld\n", reads, torn, contended, not_synced, other);
    return (torn > 0 || other > 0) ? 1 : 0;
}
