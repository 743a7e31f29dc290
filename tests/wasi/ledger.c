/* A long-running WASI program for the file-rollback tests: a small ledger.
 * Each round mixes a 1 MiB table of the heap, then
 * - appends a line to /out/log.txt (opened in append mode, then closed),
 * - rewrites /out/result.txt in place (opened with truncation),
 * - replaces /out/state.txt atomically (writes state.tmp, renames it over),
 * - overwrites one 16-byte slot of /out/slots.bin in place,
 * - every 7th round creates a directory /out/d<round> with a file in it, and
 *   removes the one made 7 rounds before (file, then directory).
 * Prints one line per round (none with a second argument `quiet`); exits with
 * the checksum modulo 100.
 * Run: ferrite run --dir DIR::/out ledger.wasm ROUNDS [quiet] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WORDS (1u << 18) /* 1 MiB of uint32_t */
#define SLOTS 64

static int put(const char *path, const char *mode, const char *text) {
    FILE *f = fopen(path, mode);
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    int quiet = argc > 2 && strcmp(argv[2], "quiet") == 0;
    uint32_t *table = malloc(WORDS * sizeof *table);
    if (!table) return 1;
    for (uint32_t i = 0; i < WORDS; i++) table[i] = i * 2654435761u;
    FILE *slots = fopen("/out/slots.bin", "w+");
    if (!slots) return 2;
    char zero[SLOTS * 16] = {0};
    fwrite(zero, 1, sizeof zero, slots);
    fflush(slots);
    uint32_t x = 12345, sum = 0;
    char line[128], dir[64], file[80];
    for (int round = 1; round <= rounds; round++) {
        for (uint32_t step = 0; step < 150000; step++) {
            x = x * 1103515245u + 12345u;
            uint32_t at = (x >> 8) & (WORDS - 1);
            table[at] = table[at] * 31u + step;
            sum += table[at];
        }
        snprintf(line, sizeof line, "round %d: %08x\n", round, sum);
        if (put("/out/log.txt", "a", line)) return 3;
        if (put("/out/result.txt", "w", line)) return 4;
        if (put("/out/state.tmp", "w", line)) return 5;
        if (rename("/out/state.tmp", "/out/state.txt")) return 6;
        fseek(slots, (long)(sum % SLOTS) * 16, SEEK_SET);
        snprintf(line, sizeof line, "%015x\n", (unsigned)round);
        fwrite(line, 1, 16, slots);
        fflush(slots);
        if (round % 7 == 0) {
            snprintf(dir, sizeof dir, "/out/d%d", round);
            if (mkdir(dir, 0755)) return 7;
            snprintf(file, sizeof file, "%s/f", dir);
            if (put(file, "w", line)) return 8;
            if (round > 7) {
                snprintf(dir, sizeof dir, "/out/d%d", round - 7);
                snprintf(file, sizeof file, "%s/f", dir);
                if (unlink(file) || rmdir(dir)) return 9;
            }
        }
        if (!quiet) {
            printf("round %d: %08x\n", round, sum);
            fflush(stdout);
        }
    }
    fclose(slots);
    printf("done: %08x\n", sum);
    return (int)(sum % 100);
}
