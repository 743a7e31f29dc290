/* Helpers shared by the WASI test programs: one line per check, with the WASI
 * errno number on failure, so that outputs compare exactly across runtimes. */
#ifndef FERRITE_WASI_CHECK_H
#define FERRITE_WASI_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <wasi/api.h>

/* A libc call that returns -1 and sets errno on failure. */
#define LIBC(label, call)                                                      \
    do {                                                                       \
        errno = 0;                                                             \
        long check_result_ = (long)(call);                                     \
        if (check_result_ < 0)                                                 \
            printf("%-44s errno %d\n", label, errno);                          \
        else                                                                   \
            printf("%-44s ok\n", label);                                       \
    } while (0)

/* A raw WASI call returning its errno. */
#define RAW(label, call)                                                       \
    do {                                                                       \
        __wasi_errno_t check_errno_ = (call);                                  \
        if (check_errno_ != 0)                                                 \
            printf("%-44s errno %d\n", label, (int)check_errno_);              \
        else                                                                   \
            printf("%-44s ok\n", label);                                       \
    } while (0)

#define SHOW(label, fmt, ...) printf("%-44s " fmt "\n", label, __VA_ARGS__)

/* A raw path_open below `dirfd` with every right the directory passes on. */
static inline __wasi_errno_t open_at(__wasi_fd_t dirfd, const char *path,
                                     __wasi_lookupflags_t lookup,
                                     __wasi_oflags_t oflags,
                                     __wasi_rights_t rights,
                                     __wasi_fdflags_t fdflags,
                                     __wasi_fd_t *out) {
    return __wasi_path_open(dirfd, lookup, path, oflags, rights, rights,
                            fdflags, out);
}

#define RIGHTS_RW                                                              \
    (__WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE | __WASI_RIGHTS_FD_SEEK |  \
     __WASI_RIGHTS_FD_TELL | __WASI_RIGHTS_FD_FILESTAT_GET |                   \
     __WASI_RIGHTS_FD_READDIR | __WASI_RIGHTS_PATH_OPEN)

/* Rights to open a directory: reading, no writing. */
#define RIGHTS_DIR                                                             \
    (__WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_READDIR |                        \
     __WASI_RIGHTS_FD_FILESTAT_GET | __WASI_RIGHTS_PATH_OPEN |                 \
     __WASI_RIGHTS_PATH_FILESTAT_GET)

#endif
