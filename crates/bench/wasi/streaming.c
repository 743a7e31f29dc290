/* Streaming over a large buffer: fill, copy, scale-and-add (STREAM triad)
 * and reduce over 64 MiB arrays.
 * Usage: streaming.wasm [scale] (default 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int scale = argc > 1 ? atoi(argv[1]) : 1;
    size_t n = 8u << 20; /* 8 Mi doubles = 64 MiB per array */
    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    for (size_t i = 0; i < n; i++) a[i] = (double)(i & 1023);
    double total = 0;
    for (int round = 0; round < 2 * scale; round++) {
        memcpy(b, a, n * sizeof *a);
        for (size_t i = 0; i < n; i++) c[i] = b[i] + 3.0 * a[i];
        for (size_t i = 0; i < n; i++) total += c[i];
        a[round] += 1;
    }
    printf("streaming: %.1f\n", total);
    return 0;
}
