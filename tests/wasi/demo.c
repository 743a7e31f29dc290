/* The "done when" program: reads a file from a preopened directory,
 * writes another, lists a directory, reads stdin, prints its arguments, an
 * environment variable and the time, tries to escape, and exits with code 3.
 * Run: ferrite run --dir DIR::/data --env GREETING=hello demo.wasm one two
 * (DIR holding input.txt). `--show-time` also prints the date. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern char **environ;

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    int show_time = 0;
    for (int i = 0; i < argc; i++) {
        printf("argv[%d] = %s\n", i, argv[i]);
        if (strcmp(argv[i], "--show-time") == 0) show_time = 1;
    }
    const char *greeting = getenv("GREETING");
    printf("GREETING = %s\n", greeting ? greeting : "(unset)");
    int vars = 0;
    for (char **e = environ; *e; e++) vars++;
    printf("environment: %d variables\n", vars);

    FILE *in = fopen("/data/input.txt", "r");
    if (!in) {
        printf("cannot open /data/input.txt: %s\n", strerror(errno));
        return 1;
    }
    FILE *out = fopen("/data/output.txt", "w");
    if (!out) {
        printf("cannot create /data/output.txt: %s\n", strerror(errno));
        return 1;
    }
    char line[512];
    int lines = 0;
    long bytes = 0;
    while (fgets(line, sizeof line, in)) {
        lines++;
        bytes += (long)strlen(line);
        for (char *p = line; *p; p++) *p = (char)toupper((unsigned char)*p);
        fputs(line, out);
    }
    fclose(in);
    fclose(out);
    printf("input.txt: %d lines, %ld bytes\n", lines, bytes);
    out = fopen("/data/output.txt", "r");
    if (out && fgets(line, sizeof line, out)) printf("output.txt starts: %s", line);
    if (out) fclose(out);

    DIR *dir = opendir("/data");
    char *names[256];
    int count = 0;
    struct dirent *entry;
    while (dir && (entry = readdir(dir)) && count < 256) {
        char kind = entry->d_type == DT_DIR ? 'd' : entry->d_type == DT_REG ? 'f' : '?';
        char *name = malloc(strlen(entry->d_name) + 3);
        sprintf(name, "%c %s", kind, entry->d_name);
        names[count++] = name;
    }
    if (dir) closedir(dir);
    qsort(names, (size_t)count, sizeof names[0], by_name);
    printf("/data holds %d entries:\n", count);
    for (int i = 0; i < count; i++) printf("  %s\n", names[i]);

    long stdin_bytes = 0, stdin_lines = 0;
    char first[512] = "";
    while (fgets(line, sizeof line, stdin)) {
        if (stdin_lines == 0) strcpy(first, line);
        stdin_lines++;
        stdin_bytes += (long)strlen(line);
    }
    printf("stdin: %ld lines, %ld bytes, first: %s", stdin_lines, stdin_bytes,
           stdin_lines ? first : "(none)\n");

    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    printf("the year is at least 2024: %s\n", tm.tm_year + 1900 >= 2024 ? "yes" : "no");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    int forward = b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec);
    printf("monotonic clock moves forward: %s\n", forward ? "yes" : "no");
    if (show_time) printf("now: %s", asctime(&tm));

    const char *escapes[] = {"/data/../outside.txt", "/etc/passwd", "../outside.txt",
                             "/data/sub/../../outside.txt"};
    for (int i = 0; i < 4; i++) {
        errno = 0;
        FILE *f = fopen(escapes[i], "r");
        printf("open %s: %s\n", escapes[i], f ? "OPENED (sandbox escape!)" : strerror(errno));
        if (f) fclose(f);
    }
    return 3;
}
