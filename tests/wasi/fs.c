/* Files and directories through libc and raw WASI calls: every oflag and
 * fdflag of path_open, read/write/pread/pwrite/seek/tell, sizes, times, sync,
 * advise, directories, links, symlinks, readdir cookies, renumber, prestat.
 * Expects a preopened empty directory /sandbox (fd 3). */
#include "check.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void show_file(const char *label, const char *path) {
    char buf[128];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (n < 0) {
        SHOW(label, "errno %d", errno);
    } else {
        buf[n] = 0;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n') buf[i] = '|';
            else if (buf[i] == 0) buf[i] = '0';
        SHOW(label, "\"%s\"", buf);
    }
    if (fd >= 0) close(fd);
}

static void reading_and_writing(void) {
    char buf[64];
    int fd = open("/sandbox/a.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    SHOW("open CREAT|WRONLY|TRUNC", "%s", fd >= 0 ? "ok" : "failed");
    SHOW("write 12", "%zd", write(fd, "hello world\n", 12));
    LIBC("read from write-only", read(fd, buf, 4));
    LIBC("close", close(fd));
    LIBC("close again", close(fd));
    LIBC("open CREAT|EXCL existing", open("/sandbox/a.txt", O_CREAT | O_EXCL | O_WRONLY, 0644));
    LIBC("open DIRECTORY on a file", open("/sandbox/a.txt", O_RDONLY | O_DIRECTORY));
    LIBC("open missing", open("/sandbox/missing.txt", O_RDONLY));
    LIBC("open missing/child", open("/sandbox/missing/x", O_RDONLY));
    LIBC("open a.txt/child", open("/sandbox/a.txt/x", O_RDONLY));

    fd = open("/sandbox/a.txt", O_RDONLY);
    SHOW("read 5", "%zd", read(fd, buf, 5));
    SHOW("lseek CUR 0", "%lld", (long long)lseek(fd, 0, SEEK_CUR));
    SHOW("lseek SET 6", "%lld", (long long)lseek(fd, 6, SEEK_SET));
    buf[read(fd, buf, sizeof buf)] = 0;
    SHOW("read rest", "%s", buf);
    SHOW("lseek END -6", "%lld", (long long)lseek(fd, -6, SEEK_END));
    LIBC("lseek SET -1", lseek(fd, -1, SEEK_SET));
    LIBC("lseek CUR -100", lseek(fd, -100, SEEK_CUR));
    SHOW("lseek past end", "%lld", (long long)lseek(fd, 100, SEEK_SET));
    SHOW("read at end", "%zd", read(fd, buf, 4));
    SHOW("pread 4 at 0", "%zd", pread(fd, buf, 4, 0));
    SHOW("offset after pread", "%lld", (long long)lseek(fd, 0, SEEK_CUR));
    LIBC("write to read-only", write(fd, "x", 1));
    LIBC("pwrite to read-only", pwrite(fd, "x", 1, 0));
    LIBC("ftruncate read-only", ftruncate(fd, 0));
    __wasi_filesize_t tell = 0;
    RAW("fd_tell", __wasi_fd_tell(fd, &tell));
    SHOW("told", "%llu", (unsigned long long)tell);
    close(fd);

    fd = open("/sandbox/a.txt", O_RDWR);
    SHOW("pwrite J at 0", "%zd", pwrite(fd, "J", 1, 0));
    SHOW("pwrite at 20 (hole)", "%zd", pwrite(fd, "!", 1, 20));
    struct stat st;
    fstat(fd, &st);
    SHOW("size after hole", "%lld", (long long)st.st_size);
    SHOW("ftruncate 12", "%d", ftruncate(fd, 12));
    SHOW("offset after pwrite", "%lld", (long long)lseek(fd, 0, SEEK_CUR));
    close(fd);
    show_file("a.txt", "/sandbox/a.txt");

}

static void append_trunc_and_flags(void) {
    int fd = open("/sandbox/a.txt", O_WRONLY | O_APPEND);
    SHOW("O_APPEND write", "%zd", write(fd, "more\n", 5));
    SHOW("offset after append", "%lld", (long long)lseek(fd, 0, SEEK_CUR));
    lseek(fd, 0, SEEK_SET);
    SHOW("append ignores seek", "%zd", write(fd, "end\n", 4));
    SHOW("pwrite appends too", "%zd", pwrite(fd, "P", 1, 0));
    int flags = fcntl(fd, F_GETFL);
    SHOW("F_GETFL append", "%s", flags & O_APPEND ? "yes" : "no");
    SHOW("F_GETFL accmode", "%s", (flags & O_ACCMODE) == O_WRONLY ? "WRONLY" : "other");
    LIBC("F_SETFL 0", fcntl(fd, F_SETFL, 0));
    flags = fcntl(fd, F_GETFL);
    SHOW("F_GETFL append after clear", "%s", flags & O_APPEND ? "yes" : "no");
    lseek(fd, 0, SEEK_SET);
    SHOW("write at 0 after clear", "%zd", write(fd, "Y", 1));
    LIBC("F_SETFL NONBLOCK", fcntl(fd, F_SETFL, O_NONBLOCK));
    flags = fcntl(fd, F_GETFL);
    SHOW("F_GETFL nonblock", "%s", flags & O_NONBLOCK ? "yes" : "no");
    RAW("fdstat_set_flags SYNC", __wasi_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_SYNC));
    close(fd);
    show_file("a.txt after appends", "/sandbox/a.txt");

    fd = open("/sandbox/a.txt", O_WRONLY | O_TRUNC);
    struct stat st;
    fstat(fd, &st);
    SHOW("O_TRUNC size", "%lld", (long long)st.st_size);
    close(fd);
    /* O_SYNC, O_DSYNC and O_RSYNC: see divergent.c (wasmtime refuses them). */
    const int syncs[] = {O_NONBLOCK};
    const char *names[] = {"O_NONBLOCK"};
    for (int i = 0; i < 1; i++) {
        fd = open("/sandbox/a.txt", O_WRONLY | syncs[i]);
        flags = fd < 0 ? -1 : fcntl(fd, F_GETFL);
        char label[64];
        snprintf(label, sizeof label, "open %s", names[i]);
        if (fd < 0)
            SHOW(label, "errno %d", errno);
        else
            SHOW(label, "%s", (flags & syncs[i]) == syncs[i] ? "flag kept" : "flag lost");
        SHOW("  write", "%zd", write(fd, "s", 1));
        close(fd);
    }
    __wasi_fd_t raw;
    RAW("path_open CREAT|DIRECTORY new", open_at(3, "newdir", 0, __WASI_OFLAGS_CREAT | __WASI_OFLAGS_DIRECTORY, RIGHTS_RW, 0, &raw));
    RAW("path_open EXCL without CREAT", open_at(3, "a.txt", 0, __WASI_OFLAGS_EXCL, RIGHTS_RW, 0, &raw));
    if (raw > 3) (void)__wasi_fd_close(raw);
}

static void sizes_sync_and_times(void) {
    int fd = open("/sandbox/t.txt", O_CREAT | O_RDWR, 0644);
    LIBC("ftruncate 10", ftruncate(fd, 10));
    struct stat st;
    fstat(fd, &st);
    SHOW("size", "%lld", (long long)st.st_size);
    SHOW("type regular", "%s", S_ISREG(st.st_mode) ? "yes" : "no");
    SHOW("nlink", "%lld", (long long)st.st_nlink);
    LIBC("ftruncate 3", ftruncate(fd, 3));
    fstat(fd, &st);
    SHOW("size", "%lld", (long long)st.st_size);
    LIBC("ftruncate -1", ftruncate(fd, -1));
    LIBC("fsync", fsync(fd));
    LIBC("fdatasync", fdatasync(fd));
    SHOW("posix_fadvise SEQUENTIAL", "%d", posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL));
    struct timespec times[2] = {{1000000000, 5}, {1234567890, 123456789}};
    LIBC("futimens fixed", futimens(fd, times));
    fstat(fd, &st);
    SHOW("atime", "%lld.%09ld", (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec);
    SHOW("mtime", "%lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct timespec omit_now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    LIBC("futimens omit/now", futimens(fd, omit_now));
    fstat(fd, &st);
    SHOW("atime kept", "%lld", (long long)st.st_atim.tv_sec);
    SHOW("mtime is recent", "%s", st.st_mtim.tv_sec > 1700000000 ? "yes" : "no");
    RAW("fd_filestat_set_times ATIM|ATIM_NOW", __wasi_fd_filestat_set_times(fd, 0, 0, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_ATIM_NOW));
    close(fd);
    LIBC("utimensat fixed", utimensat(AT_FDCWD, "/sandbox/t.txt", times, 0));
    stat("/sandbox/t.txt", &st);
    SHOW("mtime via path", "%lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    LIBC("utimensat missing", utimensat(AT_FDCWD, "/sandbox/nope", times, 0));
    LIBC("stat missing", stat("/sandbox/nope", &st));
    LIBC("fsync on a directory fd", ({
        int d = open("/sandbox", O_RDONLY | O_DIRECTORY);
        int r = fsync(d);
        close(d);
        r;
    }));
}

static void directories_and_links(void) {
    struct stat st;
    LIBC("mkdir d", mkdir("/sandbox/d", 0755));
    LIBC("mkdir d again", mkdir("/sandbox/d", 0755));
    LIBC("mkdir missing/parent", mkdir("/sandbox/nope/x", 0755));
    int fd = open("/sandbox/d/f.txt", O_CREAT | O_WRONLY, 0644);
    write(fd, "in d\n", 5);
    close(fd);
    stat("/sandbox/d", &st);
    SHOW("d is a directory", "%s", S_ISDIR(st.st_mode) ? "yes" : "no");
    LIBC("rmdir non-empty", rmdir("/sandbox/d"));
    LIBC("rmdir a file", rmdir("/sandbox/d/f.txt"));
    LIBC("unlink a directory", unlink("/sandbox/d"));
    LIBC("rename f.txt -> g.txt", rename("/sandbox/d/f.txt", "/sandbox/d/g.txt"));
    LIBC("rename missing", rename("/sandbox/d/f.txt", "/sandbox/d/h.txt"));
    LIBC("rename dir into itself", rename("/sandbox/d", "/sandbox/d/sub"));
    LIBC("rename over existing file", rename("/sandbox/t.txt", "/sandbox/d/g.txt"));
    LIBC("rename file over dir", rename("/sandbox/d/g.txt", "/sandbox/d"));
    show_file("d/g.txt", "/sandbox/d/g.txt");
    LIBC("link g.txt -> l.txt", link("/sandbox/d/g.txt", "/sandbox/l.txt"));
    stat("/sandbox/l.txt", &st);
    SHOW("nlink after link", "%lld", (long long)st.st_nlink);
    LIBC("link onto existing", link("/sandbox/d/g.txt", "/sandbox/l.txt"));
    LIBC("link a directory", link("/sandbox/d", "/sandbox/dlink"));
    LIBC("symlink s -> d/g.txt", symlink("d/g.txt", "/sandbox/s"));
    LIBC("symlink onto existing", symlink("x", "/sandbox/s"));
    char target[64];
    ssize_t n = readlink("/sandbox/s", target, sizeof target);
    SHOW("readlink s", "%.*s", (int)(n < 0 ? 0 : n), target);
    n = readlink("/sandbox/s", target, 3);
    SHOW("readlink s into 3 bytes", "%zd %.*s", n, (int)(n < 0 ? 0 : n), target);
    LIBC("readlink a file", readlink("/sandbox/l.txt", target, sizeof target));
    lstat("/sandbox/s", &st);
    SHOW("lstat s is a symlink", "%s", S_ISLNK(st.st_mode) ? "yes" : "no");
    stat("/sandbox/s", &st);
    SHOW("stat s follows", "%s", S_ISREG(st.st_mode) ? "yes" : "no");
    show_file("read through s", "/sandbox/s");
    LIBC("open s O_NOFOLLOW", open("/sandbox/s", O_RDONLY | O_NOFOLLOW));
    LIBC("symlink dangling", symlink("nowhere", "/sandbox/dangling"));
    LIBC("open dangling", open("/sandbox/dangling", O_RDONLY));
    LIBC("open dangling CREAT", open("/sandbox/dangling", O_RDWR | O_CREAT, 0644));
    LIBC("symlink loop a->b", symlink("loop_b", "/sandbox/loop_a"));
    LIBC("symlink loop b->a", symlink("loop_a", "/sandbox/loop_b"));
    LIBC("open loop", open("/sandbox/loop_a", O_RDONLY));
    LIBC("unlink symlink s", unlink("/sandbox/s"));
    LIBC("unlink l.txt", unlink("/sandbox/l.txt"));
    LIBC("unlink missing", unlink("/sandbox/l.txt"));
    LIBC("unlink d/g.txt", unlink("/sandbox/d/g.txt"));
    LIBC("rmdir d", rmdir("/sandbox/d"));
    LIBC("rmdir missing", rmdir("/sandbox/d"));
    __wasi_fd_t dirfd;
    RAW("path_link SYMLINK_FOLLOW", __wasi_path_link(3, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "t.txt", 3, "t2.txt"));
    RAW("open dir fd", open_at(3, ".", 0, __WASI_OFLAGS_DIRECTORY, RIGHTS_DIR, 0, &dirfd));
    __wasi_filestat_t fs;
    RAW("path_filestat_get via dir fd", __wasi_path_filestat_get(dirfd, 0, "t.txt", &fs));
    SHOW("  filetype", "%d", fs.filetype);
    RAW("path_filestat_get on a file fd", __wasi_path_filestat_get(0, 0, "t.txt", &fs));
    RAW("fd_read on a directory", ({
        char b[4];
        __wasi_iovec_t iov = {(uint8_t *)b, 4};
        __wasi_size_t got;
        __wasi_fd_read(dirfd, &iov, 1, &got);
    }));
    RAW("fd_seek on a directory", ({
        __wasi_filesize_t pos;
        __wasi_fd_seek(dirfd, 0, __WASI_WHENCE_SET, &pos);
    }));
    (void)__wasi_fd_close(dirfd);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void listing(void) {
    mkdir("/sandbox/many", 0755);
    for (int i = 0; i < 40; i++) {
        char path[64];
        snprintf(path, sizeof path, "/sandbox/many/file-%02d-%s", i, i % 3 ? "long-name-to-fill-buffers" : "x");
        close(open(path, O_CREAT | O_WRONLY, 0644));
    }
    mkdir("/sandbox/many/subdir", 0755);
    DIR *dir = opendir("/sandbox/many");
    char *names[64];
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) && count < 64) names[count++] = strdup(entry->d_name);
    closedir(dir);
    qsort(names, (size_t)count, sizeof names[0], by_name);
    SHOW("readdir entries", "%d", count);
    SHOW("first", "%s", names[0]);
    SHOW("second", "%s", names[1]);
    SHOW("last", "%s", names[count - 1]);

    /* The raw call with a buffer that holds about one entry at a time. */
    __wasi_fd_t fd;
    open_at(3, "many", 0, __WASI_OFLAGS_DIRECTORY, RIGHTS_DIR, 0, &fd);
    __wasi_dircookie_t cookie = 0;
    int seen = 0, dirs = 0, truncated = 0;
    uint8_t buf[80];
    for (int round = 0; round < 1000; round++) {
        __wasi_size_t used = 0;
        if (__wasi_fd_readdir(fd, buf, sizeof buf, cookie, &used) != 0) break;
        if (used == 0) break;
        __wasi_dirent_t dirent;
        memcpy(&dirent, buf, sizeof dirent);
        if (sizeof dirent + dirent.d_namlen > used) truncated++;
        seen++;
        if (dirent.d_type == __WASI_FILETYPE_DIRECTORY) dirs++;
        cookie = dirent.d_next;
    }
    SHOW("fd_readdir one by one", "%d entries, %d directories, %d truncated", seen, dirs, truncated);
    __wasi_size_t used = 1;
    RAW("fd_readdir past the end", __wasi_fd_readdir(fd, buf, sizeof buf, 1000, &used));
    SHOW("  bytes", "%lu", (unsigned long)used);
    RAW("fd_readdir zero buffer", __wasi_fd_readdir(fd, buf, 0, 0, &used));
    SHOW("  bytes", "%lu", (unsigned long)used);
    RAW("fd_readdir on a file", __wasi_fd_readdir(0, buf, sizeof buf, 0, &used));
    (void)__wasi_fd_close(fd);
}

static void descriptors(void) {
    __wasi_prestat_t prestat;
    RAW("fd_prestat_get 3", __wasi_fd_prestat_get(3, &prestat));
    SHOW("  name length", "%lu", (unsigned long)prestat.u.dir.pr_name_len);
    char name[32] = {0};
    RAW("fd_prestat_dir_name 3", __wasi_fd_prestat_dir_name(3, (uint8_t *)name, sizeof name));
    SHOW("  name", "%s", name);
    RAW("fd_prestat_dir_name short", __wasi_fd_prestat_dir_name(3, (uint8_t *)name, 3));
    RAW("fd_prestat_get 0", __wasi_fd_prestat_get(0, &prestat));
    RAW("fd_prestat_dir_name 1", __wasi_fd_prestat_dir_name(1, (uint8_t *)name, sizeof name));
    RAW("fd_prestat_get 99", __wasi_fd_prestat_get(99, &prestat));

    __wasi_fdstat_t fdstat;
    RAW("fd_fdstat_get 3", __wasi_fd_fdstat_get(3, &fdstat));
    SHOW("  filetype", "%d", fdstat.fs_filetype);
    SHOW("  rights", "%llx %llx", (unsigned long long)fdstat.fs_rights_base, (unsigned long long)fdstat.fs_rights_inheriting);

    int a = open("/sandbox/ra.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    write(a, "from a", 6);
    int b = open("/sandbox/rb.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    write(b, "from b", 6);
    RAW("fd_fdstat_get file", __wasi_fd_fdstat_get(a, &fdstat));
    SHOW("  filetype", "%d", fdstat.fs_filetype);
    SHOW("  can read and write", "%s", (fdstat.fs_rights_base & (__WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE)) == (__WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE) ? "yes" : "no");
    RAW("fd_renumber a -> b", __wasi_fd_renumber(a, b));
    char buf[16] = {0};
    lseek(b, 0, SEEK_SET);
    read(b, buf, sizeof buf - 1);
    SHOW("read b", "%s", buf);
    RAW("fd_renumber from closed a", __wasi_fd_renumber(a, b));
    RAW("fd_renumber to closed a", __wasi_fd_renumber(b, a));
    RAW("fd_renumber b -> b", __wasi_fd_renumber(b, b));
    int c = open("/sandbox/rb.txt", O_RDONLY);
    SHOW("reuses the freed number", "%s", c == a ? "yes" : "no");
    close(c);
    close(b);
    RAW("fd_close 99", __wasi_fd_close(99));
    RAW("fd_sync stdout", __wasi_fd_sync(1));
    RAW("fd_advise stdin", __wasi_fd_advise(0, 0, 0, __WASI_ADVICE_NORMAL));
    RAW("fd_filestat_set_size stdout", __wasi_fd_filestat_set_size(1, 0));
    RAW("fd_filestat_set_times stdout", __wasi_fd_filestat_set_times(1, 0, 0, 0));
}

int main(void) {
    puts("== reading and writing");
    reading_and_writing();
    puts("== append, truncate and flags");
    append_trunc_and_flags();
    puts("== sizes, sync and times");
    sizes_sync_and_times();
    puts("== directories and links");
    directories_and_links();
    puts("== listing");
    listing();
    puts("== descriptors");
    descriptors();
    return 0;
}
