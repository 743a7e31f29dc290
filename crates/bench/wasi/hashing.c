/* Hashing: FNV-1a and a 64-bit xorshift-multiply hash over a buffer,
 * byte by byte and word by word. Prints the digests.
 * Usage: hashing.wasm [scale] (default 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int scale = argc > 1 ? atoi(argv[1]) : 1;
    size_t len = 1 << 20;
    uint8_t *buf = malloc(len);
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(i * 2654435761u >> 13);
    uint32_t fnv = 2166136261u;
    uint64_t mix = 0;
    for (int round = 0; round < 32 * scale; round++) {
        for (size_t i = 0; i < len; i++) fnv = (fnv ^ buf[i]) * 16777619u;
        for (size_t i = 0; i + 8 <= len; i += 8) {
            uint64_t w;
            memcpy(&w, buf + i, 8);
            mix ^= w;
            mix ^= mix >> 33;
            mix *= 0xff51afd7ed558ccdull;
        }
        buf[round % len] ^= (uint8_t)fnv;
    }
    printf("hashing: %08x %016llx\n", fnv, (unsigned long long)mix);
    free(buf);
    return 0;
}
