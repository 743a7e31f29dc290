/* Standard streams: stdin read to its end (the harness pipes a known text),
 * what each stream allows, and exit status from main's return value (5). */
#include "check.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char buf[4096];
    long total = 0, lines = 0;
    unsigned checksum = 0;
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            checksum = checksum * 31 + (unsigned char)buf[i];
            lines += buf[i] == '\n';
        }
        total += n;
    }
    SHOW("stdin bytes", "%ld", total);
    SHOW("stdin lines", "%ld", lines);
    SHOW("stdin checksum", "%08x", checksum);
    SHOW("read after end", "%zd", read(0, buf, sizeof buf));
    LIBC("write to stdin", write(0, "x", 1));
    LIBC("read from stdout", read(1, buf, 1));
    LIBC("lseek stdout", lseek(1, 0, SEEK_CUR));
    LIBC("lseek stdin", lseek(0, 0, SEEK_SET));
    LIBC("pread stdin", pread(0, buf, 1, 0));
    LIBC("pwrite stdout", pwrite(1, "x", 1, 0));
    __wasi_filesize_t pos;
    RAW("fd_tell stderr", __wasi_fd_tell(2, &pos));
    __wasi_fdstat_t st;
    for (int fd = 0; fd < 3; fd++) {
        char label[32];
        snprintf(label, sizeof label, "fd_fdstat_get %d", fd);
        RAW(label, __wasi_fd_fdstat_get(fd, &st));
        SHOW("  filetype, rights", "%d %llx", st.fs_filetype, (unsigned long long)st.fs_rights_base);
    }
    struct stat s;
    LIBC("fstat stdout", fstat(1, &s));
    SHOW("  size", "%lld", (long long)s.st_size);
    SHOW("isatty(1)", "%d", isatty(1));
    fprintf(stderr, "to stderr\n");
    fflush(stdout);
    static char big[20000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = i % 100 == 99 ? '\n' : (char)('a' + i % 26);
    SHOW("one large write", "%zd", write(1, big, sizeof big));
    LIBC("close stdin", close(0));
    LIBC("read closed stdin", read(0, buf, 1));
    return argc > 1 ? atoi(argv[1]) : 5;
}
