/* A C reader driven line by line from stdin, for tests that change segments under a live reader
 * process (tests/security/shm_trust.rs): a SIGBUS in it fails the test, not the test runner.
 *
 *     stdin_reader CLUSTER EXCHANGE MARKET [TRUST]
 *
 * Each line "read" reads the best ask and prints "ok PRICE" or "err STATUS MESSAGE"; end of input
 * closes the reader and exits 0. TRUST, when given, goes to ubdcc_reader_open_trusting. */
#include <stdio.h>
#include <string.h>

#include "ubdcc.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s CLUSTER EXCHANGE MARKET [TRUST]\n", argv[0]);
        return 2;
    }
    const char *trust = argc > 4 ? argv[4] : NULL;
    ubdcc_reader_t *reader = NULL;
    if (ubdcc_reader_open_trusting(argv[1], trust, &reader) != UBDCC_OK) {
        printf("open failed: %s\n", ubdcc_last_error_message());
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "read", 4) != 0) {
            printf("unknown command\n");
            continue;
        }
        ubdcc_level_t best;
        size_t count = 0;
        int64_t limit = 1;
        ubdcc_status_t status =
            ubdcc_get_asks(reader, argv[2], argv[3], &limit, NULL, &best, 1, &count, NULL);
        if (status == UBDCC_OK && count == 1) {
            printf("ok %.1f\n", best.price);
        } else {
            printf("err %s %s\n", ubdcc_status_name(status), ubdcc_last_error_message());
        }
    }
    ubdcc_reader_close(reader);
    return 0;
}
