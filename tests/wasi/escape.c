/* Attempts to leave the sandbox: `..`, absolute paths, symlinks the guest
 * creates, descriptors of subdirectories, and every path function. Each must
 * fail, with the errno wasmtime gives. Expects /sandbox (fd 3) preopened on a
 * directory whose sibling `outside` holds secret.txt. */
#include "check.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void try_open(__wasi_fd_t dir, const char *path, __wasi_lookupflags_t lookup) {
    __wasi_fd_t fd = 0;
    char label[80];
    snprintf(label, sizeof label, "open %s%s", path, lookup ? "" : " (nofollow)");
    __wasi_errno_t e = open_at(dir, path, lookup, 0, RIGHTS_RW & ~__WASI_RIGHTS_FD_WRITE, 0, &fd);
    if (e == 0) {
        char buf[32] = {0};
        __wasi_iovec_t iov = {(uint8_t *)buf, sizeof buf - 1};
        __wasi_size_t n = 0;
        (void)__wasi_fd_read(fd, &iov, 1, &n);
        for (char *p = buf; *p; p++)
            if (*p == '\n') *p = '|';
        SHOW(label, "opened: \"%s\"", buf);
        (void)__wasi_fd_close(fd);
    } else {
        SHOW(label, "errno %d", e);
    }
}

int main(void) {
    const __wasi_lookupflags_t F = __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW;
    int fd = open("/sandbox/inside.txt", O_CREAT | O_WRONLY, 0644);
    write(fd, "inside\n", 7);
    close(fd);
    mkdir("/sandbox/sub", 0755);
    mkdir("/sandbox/sub/deeper", 0755);

    puts("== dot-dot and absolute paths");
    try_open(3, "inside.txt", F);
    try_open(3, "..", F);
    try_open(3, "../outside/secret.txt", F);
    try_open(3, "sub/../../outside/secret.txt", F);
    try_open(3, "sub/deeper/../../../outside/secret.txt", F);
    try_open(3, "sub/../inside.txt", F);
    try_open(3, "./sub/./../inside.txt", F);
    try_open(3, "/etc/passwd", F);
    try_open(3, "/", F);
    try_open(3, "", F);
    LIBC("libc open /sandbox/../outside/secret.txt", open("/sandbox/../outside/secret.txt", O_RDONLY));
    LIBC("libc open /outside/secret.txt", open("/outside/secret.txt", O_RDONLY));
    LIBC("libc open ../outside/secret.txt", open("../outside/secret.txt", O_RDONLY));

    puts("== symlinks made by the guest");
    LIBC("symlink up -> ..", symlink("..", "/sandbox/up"));
    LIBC("symlink abs -> /etc/passwd", symlink("/etc/passwd", "/sandbox/abs"));
    LIBC("symlink root -> /", symlink("/", "/sandbox/root"));
    LIBC("symlink sub/back -> ../..", symlink("../..", "/sandbox/sub/back"));
    LIBC("symlink in -> inside.txt", symlink("inside.txt", "/sandbox/in"));
    LIBC("symlink sub/in2 -> ../inside.txt", symlink("../inside.txt", "/sandbox/sub/in2"));
    LIBC("symlink hop -> sub/back", symlink("sub/back", "/sandbox/hop"));
    try_open(3, "up/outside/secret.txt", F);
    try_open(3, "up", F);
    try_open(3, "sub/back/outside/secret.txt", F);
    try_open(3, "hop/outside/secret.txt", F);
    try_open(3, "in", F);
    try_open(3, "in", 0);
    try_open(3, "sub/in2", F);
    try_open(3, "up", 0);
    char target[64];
    ssize_t n = readlink("/sandbox/up", target, sizeof target);
    SHOW("readlink up", "%.*s", (int)(n < 0 ? 0 : n), target);
    struct stat st;
    LIBC("stat up/outside", stat("/sandbox/up/outside", &st));
    LIBC("lstat up", lstat("/sandbox/up", &st));

    puts("== a subdirectory descriptor is its own sandbox");
    __wasi_fd_t sub;
    RAW("open sub", open_at(3, "sub", F, __WASI_OFLAGS_DIRECTORY, RIGHTS_DIR, 0, &sub));
    try_open(sub, "../inside.txt", F);
    try_open(sub, "in2", F);
    try_open(sub, "deeper/../../inside.txt", F);
    try_open(sub, "deeper/..", F);

    puts("== every path function refuses to leave");
    RAW("path_create_directory ../x", __wasi_path_create_directory(3, "../x"));
    RAW("path_create_directory up/x", __wasi_path_create_directory(3, "up/x"));
    RAW("path_remove_directory ../outside", __wasi_path_remove_directory(3, "../outside"));
    RAW("path_unlink_file ../outside/secret.txt", __wasi_path_unlink_file(3, "../outside/secret.txt"));
    RAW("path_unlink_file up/outside/secret.txt", __wasi_path_unlink_file(3, "up/outside/secret.txt"));
    __wasi_filestat_t fs;
    RAW("path_filestat_get ../outside", __wasi_path_filestat_get(3, F, "../outside", &fs));
    RAW("path_filestat_get /etc", __wasi_path_filestat_get(3, F, "/etc", &fs));
    RAW("path_filestat_get up (nofollow)", __wasi_path_filestat_get(3, 0, "up", &fs));
    RAW("path_filestat_set_times ../outside", __wasi_path_filestat_set_times(3, F, "../outside", 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    RAW("path_rename inside.txt ../stolen", __wasi_path_rename(3, "inside.txt", 3, "../stolen"));
    RAW("path_rename ../outside/secret.txt x", __wasi_path_rename(3, "../outside/secret.txt", 3, "x"));
    RAW("path_link ../outside/secret.txt x", __wasi_path_link(3, 0, "../outside/secret.txt", 3, "x"));
    RAW("path_link inside.txt ../x", __wasi_path_link(3, 0, "inside.txt", 3, "../x"));
    RAW("path_link up/outside/secret.txt x", __wasi_path_link(3, 0, "up/outside/secret.txt", 3, "x"));
    RAW("path_symlink x -> /etc", __wasi_path_symlink("/etc", 3, "x"));
    RAW("path_symlink ../y -> inside.txt", __wasi_path_symlink("inside.txt", 3, "../y"));
    __wasi_size_t used;
    RAW("path_readlink ../outside", __wasi_path_readlink(3, "../outside", (uint8_t *)target, sizeof target, &used));
    RAW("path_readlink abs", __wasi_path_readlink(3, "abs", (uint8_t *)target, sizeof target, &used));
    __wasi_fd_t created;
    RAW("path_open CREAT ../new.txt", open_at(3, "../new.txt", F, __WASI_OFLAGS_CREAT, RIGHTS_RW, 0, &created));
    RAW("path_open CREAT up/new.txt", open_at(3, "up/new.txt", F, __WASI_OFLAGS_CREAT, RIGHTS_RW, 0, &created));
    RAW("path_open through stdin", open_at(0, "x", F, 0, RIGHTS_RW, 0, &created));
    RAW("path_open through a file", ({
        __wasi_fd_t file;
        open_at(3, "inside.txt", F, 0, RIGHTS_DIR, 0, &file);
        open_at(file, "x", F, 0, RIGHTS_RW, 0, &created);
    }));
    puts("== the sandbox still works");
    try_open(3, "inside.txt", F);
    return 0;
}
