/* Where ferrite deliberately differs from wasmtime (docs/wasi.md lists why), so
 * the expected output is ferrite's own: hostile pointers and lengths are errnos
 * (wasmtime traps), invalid flag and enum values are EINVAL (wasmtime traps),
 * CPU-time clocks work, fd_allocate works, rights can be dropped and are then
 * enforced, O_SYNC/O_DSYNC/O_RSYNC are honoured, sockets are ENOTSUP, and
 * readv/writev move all their buffers. Expects /sandbox (fd 3). */
#include "check.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define IMPORT(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))
IMPORT(fd_write) int32_t raw_fd_write(int32_t fd, int32_t iovs, int32_t count, int32_t nwritten);
IMPORT(fd_read) int32_t raw_fd_read(int32_t fd, int32_t iovs, int32_t count, int32_t nread);
IMPORT(path_open) int32_t raw_path_open(int32_t fd, int32_t dirflags, int32_t path, int32_t len, int32_t oflags, int64_t base, int64_t inheriting, int32_t fdflags, int32_t out);
IMPORT(args_get) int32_t raw_args_get(int32_t argv, int32_t buf);
IMPORT(random_get) int32_t raw_random_get(int32_t buf, int32_t len);
IMPORT(clock_time_get) int32_t raw_clock_time_get(int32_t id, int64_t precision, int32_t out);
IMPORT(fd_seek) int32_t raw_fd_seek(int32_t fd, int64_t delta, int32_t whence, int32_t out);
IMPORT(fd_readdir) int32_t raw_fd_readdir(int32_t fd, int32_t buf, int32_t len, int64_t cookie, int32_t out);
IMPORT(poll_oneoff) int32_t raw_poll_oneoff(int32_t in, int32_t out, int32_t count, int32_t nevents);
IMPORT(proc_raise) int32_t raw_proc_raise(int32_t signal);
IMPORT(fd_fdstat_set_flags) int32_t raw_fd_fdstat_set_flags(int32_t fd, int32_t flags);
IMPORT(fd_advise) int32_t raw_fd_advise(int32_t fd, int64_t offset, int64_t len, int32_t advice);
IMPORT(fd_filestat_set_times) int32_t raw_fd_filestat_set_times(int32_t fd, int64_t atim, int64_t mtim, int32_t flags);

static void hostile_pointers(void) {
    int32_t end = (int32_t)(__builtin_wasm_memory_size(0) * 65536);
    static int32_t iov[2];
    static int32_t out;
    static char text[] = "hi\n";
    iov[0] = (int32_t)(intptr_t)text;
    iov[1] = 3;
    SHOW("fd_write iovs past the end", "errno %d", raw_fd_write(1, end - 4, 1, (int32_t)(intptr_t)&out));
    SHOW("fd_write iovs at 0xfffffff8", "errno %d", raw_fd_write(1, (int32_t)0xfffffff8, 1, (int32_t)(intptr_t)&out));
    SHOW("fd_write 2^31 iovecs", "errno %d", raw_fd_write(1, (int32_t)(intptr_t)iov, 0x7fffffff, (int32_t)(intptr_t)&out));
    SHOW("fd_write nwritten past the end", "errno %d", raw_fd_write(1, (int32_t)(intptr_t)iov, 1, end));
    iov[0] = end - 1;
    iov[1] = 2;
    SHOW("fd_write buffer crossing the end", "errno %d", raw_fd_write(1, (int32_t)(intptr_t)iov, 1, (int32_t)(intptr_t)&out));
    iov[1] = -1;
    SHOW("fd_read 4 GiB buffer", "errno %d", raw_fd_read(0, (int32_t)(intptr_t)iov, 1, (int32_t)(intptr_t)&out));
    SHOW("path_open path past the end", "errno %d", raw_path_open(3, 1, end - 2, 10, 0, 2, 2, 0, (int32_t)(intptr_t)&out));
    SHOW("path_open 2 GiB path", "errno %d", raw_path_open(3, 1, 0, 0x7fffffff, 0, 2, 2, 0, (int32_t)(intptr_t)&out));
    SHOW("path_open result past the end", "errno %d", raw_path_open(3, 1, (int32_t)(intptr_t)"x", 1, 1, 2, 2, 0, end));
    struct stat st;
    SHOW("  and created nothing", "%s", stat("/sandbox/x", &st) ? "yes" : "no");
    SHOW("args_get into the end", "errno %d", raw_args_get(end - 2, end - 1));
    SHOW("random_get past the end", "errno %d", raw_random_get(end - 8, 16));
    SHOW("random_get 4 GiB", "errno %d", raw_random_get(0, -1));
    SHOW("clock_time_get result past end", "errno %d", raw_clock_time_get(1, 1, end - 4));
    SHOW("fd_readdir buffer past the end", "errno %d", raw_fd_readdir(3, end - 8, 4096, 0, (int32_t)(intptr_t)&out));
    SHOW("poll_oneoff 2^20 subscriptions", "errno %d", raw_poll_oneoff(0, 0, 1 << 20, (int32_t)(intptr_t)&out));
    SHOW("poll_oneoff events past the end", "errno %d", raw_poll_oneoff(0, end - 8, 1, (int32_t)(intptr_t)&out));
}

static void invalid_values(void) {
    static int64_t pos;
    int fd = open("/sandbox/v.txt", O_CREAT | O_RDWR, 0644);
    SHOW("fd_seek whence 3", "errno %d", raw_fd_seek(fd, 0, 3, (int32_t)(intptr_t)&pos));
    SHOW("clock_time_get clock 7", "errno %d", raw_clock_time_get(7, 1, (int32_t)(intptr_t)&pos));
    SHOW("fd_fdstat_set_flags 0x100", "errno %d", raw_fd_fdstat_set_flags(fd, 0x100));
    SHOW("fd_advise advice 99", "errno %d", raw_fd_advise(fd, 0, 0, 99));
    SHOW("fd_filestat_set_times flags 0x40", "errno %d", raw_fd_filestat_set_times(fd, 0, 0, 0x40));
    static int32_t out;
    SHOW("path_open oflags 0x10", "errno %d", raw_path_open(3, 1, (int32_t)(intptr_t)"v.txt", 5, 0x10, 2, 2, 0, (int32_t)(intptr_t)&out));
    SHOW("path_open lookupflags 2", "errno %d", raw_path_open(3, 2, (int32_t)(intptr_t)"v.txt", 5, 0, 2, 2, 0, (int32_t)(intptr_t)&out));
    SHOW("path_open invalid UTF-8", "errno %d", raw_path_open(3, 1, (int32_t)(intptr_t)"\xff\xfe", 2, 0, 2, 2, 0, (int32_t)(intptr_t)&out));
    SHOW("proc_raise SIGTERM", "errno %d", raw_proc_raise(15));
    close(fd);
}

static void cpu_clocks(void) {
    __wasi_timestamp_t a = 0, b = 0, res = 0;
    RAW("clock_res_get process", __wasi_clock_res_get(__WASI_CLOCKID_PROCESS_CPUTIME_ID, &res));
    RAW("clock_time_get process", __wasi_clock_time_get(__WASI_CLOCKID_PROCESS_CPUTIME_ID, 1, &a));
    volatile uint64_t x = 1;
    for (int i = 0; i < 3000000; i++) x = x * 6364136223846793005ull + 1;
    RAW("clock_time_get process again", __wasi_clock_time_get(__WASI_CLOCKID_PROCESS_CPUTIME_ID, 1, &b));
    SHOW("  CPU time advanced", "%s", b > a ? "yes" : "no");
    RAW("clock_time_get thread", __wasi_clock_time_get(__WASI_CLOCKID_THREAD_CPUTIME_ID, 1, &a));

}

static void allocate_sync_and_vectors(void) {
    int fd = open("/sandbox/alloc.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    SHOW("posix_fallocate 0+100", "%d", posix_fallocate(fd, 0, 100));
    struct stat st;
    fstat(fd, &st);
    SHOW("  size", "%lld", (long long)st.st_size);
    SHOW("posix_fallocate 10+5 (inside)", "%d", posix_fallocate(fd, 10, 5));
    fstat(fd, &st);
    SHOW("  size", "%lld", (long long)st.st_size);
    RAW("fd_allocate len 0", __wasi_fd_allocate(fd, 0, 0));
    close(fd);
    fd = open("/sandbox/alloc.txt", O_RDONLY);
    RAW("fd_allocate read-only", __wasi_fd_allocate(fd, 0, 200));
    close(fd);

    const int syncs[] = {O_SYNC, O_DSYNC, O_RSYNC | O_RDWR};
    const char *names[] = {"O_SYNC", "O_DSYNC", "O_RSYNC"};
    for (int i = 0; i < 3; i++) {
        fd = open("/sandbox/alloc.txt", O_WRONLY | syncs[i]);
        int flags = fd < 0 ? 0 : fcntl(fd, F_GETFL);
        char label[64];
        snprintf(label, sizeof label, "open %s", names[i]);
        SHOW(label, "%s", fd < 0 ? "failed" : (flags & syncs[i]) == syncs[i] ? "flag kept" : "flag lost");
        SHOW("  write", "%zd", write(fd, "s", 1));
        close(fd);
    }

    fd = open("/sandbox/vec.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    struct iovec out[3] = {{"abc", 3}, {"", 0}, {"defg", 4}};
    SHOW("writev 3 buffers", "%zd", writev(fd, out, 3));
    char x[2], y[3], z[8];
    struct iovec in[3] = {{x, 2}, {y, 3}, {z, 8}};
    lseek(fd, 0, SEEK_SET);
    ssize_t n = readv(fd, in, 3);
    SHOW("readv 3 buffers", "%zd %.2s %.3s %.2s", n, x, y, z);
    close(fd);
}

static void rights(void) {
    int fd = open("/sandbox/vec.txt", O_RDWR);
    __wasi_fdstat_t st;
    (void)__wasi_fd_fdstat_get(fd, &st);
    RAW("drop FD_SEEK", __wasi_fd_fdstat_set_rights(fd, st.fs_rights_base & ~__WASI_RIGHTS_FD_SEEK, st.fs_rights_inheriting));
    LIBC("lseek without FD_SEEK (libc: ESPIPE)", lseek(fd, 1, SEEK_SET));
    LIBC("lseek CUR 0 (FD_TELL) still works", lseek(fd, 0, SEEK_CUR));
    RAW("drop FD_READ", __wasi_fd_fdstat_set_rights(fd, st.fs_rights_base & ~(__WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_READ), st.fs_rights_inheriting));
    char buf[4];
    LIBC("read without FD_READ", read(fd, buf, 1));
    LIBC("write still works", write(fd, "w", 1));
    RAW("take FD_READ back", __wasi_fd_fdstat_set_rights(fd, st.fs_rights_base, st.fs_rights_inheriting));
    close(fd);
    __wasi_fd_t dir;
    RAW("open sandbox again", open_at(3, ".", 0, __WASI_OFLAGS_DIRECTORY, RIGHTS_DIR, 0, &dir));
    (void)__wasi_fd_fdstat_get(dir, &st);
    RAW("drop PATH_CREATE_FILE", __wasi_fd_fdstat_set_rights(dir, st.fs_rights_base & ~__WASI_RIGHTS_PATH_CREATE_FILE, st.fs_rights_inheriting));
    __wasi_fd_t file;
    RAW("create through it", open_at(dir, "new.txt", 0, __WASI_OFLAGS_CREAT, RIGHTS_RW, 0, &file));
    RAW("open existing through it", open_at(dir, "vec.txt", 0, 0, RIGHTS_RW, 0, &file));
    (void)__wasi_fd_fdstat_get(dir, &st);
    RAW("drop FD_WRITE from inheriting", __wasi_fd_fdstat_set_rights(dir, st.fs_rights_base, st.fs_rights_inheriting & ~__WASI_RIGHTS_FD_WRITE));
    RAW("open for writing through it", open_at(dir, "vec.txt", 0, 0, RIGHTS_RW, 0, &file));
    __wasi_iovec_t ciov = {(uint8_t *)"z", 1};
    __wasi_size_t n;
    RAW("  write", __wasi_fd_write(file, (const __wasi_ciovec_t *)&ciov, 1, &n));
    RAW("drop PATH_OPEN", __wasi_fd_fdstat_set_rights(dir, 0, 0));
    RAW("open through it", open_at(dir, "vec.txt", 0, 0, RIGHTS_DIR, 0, &file));
}

static void sockets(void) {
    __wasi_fd_t fd;
    RAW("sock_accept stdin", __wasi_sock_accept(0, 0, &fd));
    RAW("sock_accept 99", __wasi_sock_accept(99, 0, &fd));
    __wasi_size_t n;
    __wasi_roflags_t ro;
    __wasi_iovec_t iov = {(uint8_t *)&n, 1};
    RAW("sock_recv stdin", __wasi_sock_recv(0, &iov, 1, 0, &n, &ro));
    RAW("sock_send stdout", __wasi_sock_send(1, (const __wasi_ciovec_t *)&iov, 1, 0, &n));
    RAW("sock_shutdown stdout", __wasi_sock_shutdown(1, __WASI_SDFLAGS_RD));
}

int main(void) {
    puts("== hostile pointers and lengths");
    hostile_pointers();
    puts("== invalid flag and enum values");
    invalid_values();
    puts("== CPU-time clocks");
    cpu_clocks();
    puts("== allocate, sync flags, vectors");
    allocate_sync_and_vectors();
    puts("== rights");
    rights();
    puts("== sockets");
    sockets();
    return 0;
}
