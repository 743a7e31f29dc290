/* A large open-addressing hash table: inserts, lookups and deletes of
 * millions of keys, with memory far beyond the caches.
 * Usage: hashtable.wasm [scale] (default 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define EMPTY 0
#define TOMB 1

static uint64_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

int main(int argc, char **argv) {
    int scale = argc > 1 ? atoi(argv[1]) : 1;
    size_t n = 1000000 * (size_t)scale, cap = 1;
    while (cap < n * 2) cap <<= 1;
    uint64_t *keys = calloc(cap, sizeof *keys), *vals = calloc(cap, sizeof *vals);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = i * 7919 + 2, h = hash(k) & (cap - 1);
        while (keys[h] > TOMB && keys[h] != k) h = (h + 1) & (cap - 1);
        keys[h] = k;
        vals[h] = i;
    }
    uint64_t found = 0, sum = 0;
    for (uint64_t i = 0; i < 2 * n; i++) {
        uint64_t k = i * 7919 + 2, h = hash(k) & (cap - 1);
        while (keys[h] != EMPTY && keys[h] != k) h = (h + 1) & (cap - 1);
        if (keys[h] == k) found++, sum += vals[h];
    }
    for (uint64_t i = 0; i < n; i += 2) {
        uint64_t k = i * 7919 + 2, h = hash(k) & (cap - 1);
        while (keys[h] != EMPTY && keys[h] != k) h = (h + 1) & (cap - 1);
        if (keys[h] == k) keys[h] = TOMB;
    }
    uint64_t live = 0;
    for (size_t h = 0; h < cap; h++) live += keys[h] > TOMB;
    printf("hashtable: %llu %llu %llu\n", (unsigned long long)found, (unsigned long long)sum, (unsigned long long)live);
    return 0;
}
