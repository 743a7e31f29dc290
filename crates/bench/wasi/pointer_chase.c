/* Pointer chasing: a random cyclic permutation walked node by node, so every
 * load depends on the previous one and misses the caches (and the TLB).
 * Usage: pointer_chase.wasm [scale] (default 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int scale = argc > 1 ? atoi(argv[1]) : 1;
    uint32_t n = 1u << 22;
    uint32_t *next = malloc(n * sizeof *next), *order = malloc(n * sizeof *order);
    for (uint32_t i = 0; i < n; i++) order[i] = i;
    uint64_t x = 88172645463325252ull;
    for (uint32_t i = n - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t j = (uint32_t)(x % (i + 1));
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (uint32_t i = 0; i < n; i++) next[order[i]] = order[(i + 1) % n];
    uint32_t p = 0;
    uint64_t sum = 0;
    for (long step = 0; step < 8000000L * scale; step++) {
        p = next[p];
        sum += p;
    }
    printf("pointer_chase: %u %llu\n", p, (unsigned long long)sum);
    return 0;
}
