/* Compute-bound: integer and floating-point arithmetic in tight loops
 * (Mandelbrot set on a grid, plus a 64-bit LCG mix). Prints a checksum.
 * Usage: compute.wasm [scale] (default 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int scale = argc > 1 ? atoi(argv[1]) : 1;
    int size = 500 * scale;
    uint64_t inside = 0;
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            double cr = -2.0 + 3.0 * x / size, ci = -1.5 + 3.0 * y / size;
            double zr = 0, zi = 0;
            int i = 0;
            while (i < 200 && zr * zr + zi * zi < 4.0) {
                double t = zr * zr - zi * zi + cr;
                zi = 2 * zr * zi + ci;
                zr = t;
                i++;
            }
            inside += (uint64_t)i;
        }
    }
    uint64_t state = 42;
    for (long i = 0; i < 20000000L * scale; i++) state = state * 6364136223846793005ull + 1442695040888963407ull ^ (state >> 29);
    printf("compute: %llu %016llx\n", (unsigned long long)inside, (unsigned long long)state);
    return 0;
}
