/* Arguments and environment exactly as given, in order. */
#include "check.h"

#include <stdlib.h>

extern char **environ;

int main(int argc, char **argv) {
    SHOW("argc", "%d", argc);
    for (int i = 0; i < argc; i++) printf("argv[%d] = [%s]\n", i, argv[i]);
    int count = 0;
    for (char **e = environ; *e; e++) printf("environ[%d] = [%s]\n", count++, *e);
    const char *names[] = {"EMPTY", "WITH_EQUALS", "UNICODE", "MISSING"};
    for (int i = 0; i < 4; i++) {
        const char *value = getenv(names[i]);
        printf("getenv(%s) = %s%s%s\n", names[i], value ? "[" : "", value ? value : "NULL", value ? "]" : "");
    }
    __wasi_size_t n, size;
    RAW("args_sizes_get", __wasi_args_sizes_get(&n, &size));
    SHOW("  count, bytes", "%lu %lu", (unsigned long)n, (unsigned long)size);
    RAW("environ_sizes_get", __wasi_environ_sizes_get(&n, &size));
    SHOW("  count, bytes", "%lu %lu", (unsigned long)n, (unsigned long)size);
    return 0;
}
