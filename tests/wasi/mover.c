/* A process to move between machines: it keeps a heap of MIB MiB dirty at
 * about RATE MiB/s (0: as fast as it can) for STEPS steps. Each step rewrites
 * one 4 KiB page, chosen by a pseudo-random walk, from a running checksum.
 * After every 1024 steps it appends "batch N CHECK" to /out/log.txt. At the
 * end it reads the log back: it must hold batches 0..n-1, each once and in
 * order. Two runners at once would repeat batches (they share the files), and
 * a lost step would change a CHECK, so the last line tells both:
 *   "steps S batches B log ok checksum X"   or   "... log FORK at line L ..."
 * The output depends on MIB and STEPS only, never on timing: RATE paces it.
 * Run: ferrite run --dir DIR::/out mover.wasm MIB RATE STEPS */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE_WORDS 1024u
#define BATCH 1024u

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Sleeps so that a batch of `bytes` took at least bytes / rate. Elapsed time
 * is measured within the batch only: a resume on another machine may change
 * the clock's origin, and a batch that straddles it just is not paced. */
static void pace(uint64_t began, uint64_t bytes, uint64_t rate_mib) {
    if (rate_mib == 0) return;
    uint64_t want = bytes * 1000000000u / (rate_mib << 20);
    uint64_t took = now_ns() - began;
    if (took >= want || want - took > 1000000000u) return;
    uint64_t left = want - took;
    struct timespec t = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
    nanosleep(&t, NULL);
}

static int check_log(uint32_t batches, char *why, size_t why_bytes) {
    FILE *log = fopen("/out/log.txt", "r");
    if (!log) {
        snprintf(why, why_bytes, "missing");
        return batches == 0 ? 0 : -1;
    }
    char line[128];
    uint32_t expected = 0, number, check;
    while (fgets(line, sizeof line, log)) {
        if (sscanf(line, "batch %u %x", &number, &check) != 2 || number != expected) {
            snprintf(why, why_bytes, "FORK at line %u", expected + 1);
            fclose(log);
            return -1;
        }
        expected++;
    }
    fclose(log);
    if (expected != batches) {
        snprintf(why, why_bytes, "has %u batches", expected);
        return -1;
    }
    snprintf(why, why_bytes, "ok");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: mover.wasm MIB RATE_MIB_PER_S STEPS\n");
        return 2;
    }
    uint32_t mib = (uint32_t)atoi(argv[1]);
    uint64_t rate = (uint64_t)atoi(argv[2]);
    uint32_t steps = (uint32_t)strtoul(argv[3], NULL, 10);
    uint32_t pages = mib * 256u;
    if (pages == 0) return 2;
    uint32_t *heap = calloc((size_t)pages, PAGE_WORDS * sizeof *heap);
    if (!heap) return 3;
    FILE *log = fopen("/out/log.txt", "w");
    if (!log) return 4;
    fclose(log);
    uint32_t x = 2463534242u, sum = 0, batch = 0;
    uint64_t began = now_ns();
    for (uint32_t step = 0; step < steps; step++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        uint32_t *page = heap + (size_t)(x % pages) * PAGE_WORDS;
        uint32_t value = page[0] * 31u + step;
        for (uint32_t i = 0; i < PAGE_WORDS; i++) page[i] = value + i;
        sum = sum * 33u + value;
        if ((step + 1) % BATCH == 0 || step + 1 == steps) {
            log = fopen("/out/log.txt", "a");
            if (!log) return 5;
            fprintf(log, "batch %u %08x\n", batch++, sum);
            if (fclose(log) != 0) return 6;
            pace(began, (uint64_t)BATCH * PAGE_WORDS * 4u, rate);
            began = now_ns();
        }
    }
    uint32_t sample = 0;
    for (uint32_t p = 0; p < pages; p++) sample = sample * 7u + heap[(size_t)p * PAGE_WORDS];
    char why[64];
    int ok = check_log(batch, why, sizeof why);
    printf("steps %u batches %u log %s checksum %08x %08x\n", steps, batch, why, sum, sample);
    return ok == 0 ? 0 : 1;
}
