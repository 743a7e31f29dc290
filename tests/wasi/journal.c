/* A long-running WASI program for the persistence tests: mixes a 4 MiB table
 * of the heap for ROUNDS rounds, and after each round prints a line to stdout
 * and writes the same line to /out/journal.txt (opened once, not in append
 * mode). Exits with the final checksum modulo 100.
 * Run: ferrite run --dir DIR::/out journal.wasm ROUNDS */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define WORDS (1u << 20) /* 4 MiB of uint32_t */

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    uint32_t *table = malloc(WORDS * sizeof *table);
    if (!table) {
        printf("out of memory\n");
        return 1;
    }
    for (uint32_t i = 0; i < WORDS; i++) table[i] = i * 2654435761u;
    FILE *journal = fopen("/out/journal.txt", "w");
    if (!journal) {
        printf("cannot open /out/journal.txt\n");
        return 1;
    }
    uint32_t x = 12345, sum = 0;
    for (int round = 1; round <= rounds; round++) {
        for (uint32_t step = 0; step < 200000; step++) {
            x = x * 1103515245u + 12345u;
            uint32_t at = (x >> 8) & (WORDS - 1);
            table[at] = table[at] * 31u + step;
            sum += table[at];
        }
        printf("round %d: %08x\n", round, sum);
        fprintf(journal, "round %d: %08x\n", round, sum);
        fflush(stdout);
        fflush(journal);
    }
    fclose(journal);
    printf("done: %08x\n", sum);
    return (int)(sum % 100);
}
