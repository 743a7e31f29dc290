/* Appends LINES lines to /out/log.txt, one every PAUSE microseconds (default
 * 1000: a line a millisecond; 0: as fast as it can), through one descriptor
 * opened in append mode and flushed after each line: the workload of the file
 * journal's cost measurement and of the append rollback test.
 * Run: ferrite run --dir DIR::/out appender.wasm LINES [PAUSE] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    int lines = argc > 1 ? atoi(argv[1]) : 1000;
    FILE *log = fopen("/out/log.txt", "a");
    if (!log) return 1;
    long micros = argc > 2 ? atol(argv[2]) : 1000;
    struct timespec pause = {micros / 1000000, (micros % 1000000) * 1000};
    for (int i = 1; i <= lines; i++) {
        fprintf(log, "line %d\n", i);
        fflush(log);
        if (micros > 0) nanosleep(&pause, NULL);
    }
    return fclose(log) ? 2 : 0;
}
