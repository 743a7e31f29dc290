/* Clocks, randomness, sched_yield and poll_oneoff with clock subscriptions,
 * file readiness and stdin readiness (stdin: "ready\n" from the harness).
 * Times are checked by their properties, never printed. */
#include "check.h"

#include <fcntl.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static __wasi_timestamp_t now(__wasi_clockid_t id) {
    __wasi_timestamp_t t = 0;
    (void)__wasi_clock_time_get(id, 1, &t);
    return t;
}

static __wasi_subscription_t clock_sub(uint64_t userdata, __wasi_clockid_t id,
                                       __wasi_timestamp_t timeout, __wasi_subclockflags_t flags) {
    __wasi_subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = userdata;
    s.u.tag = __WASI_EVENTTYPE_CLOCK;
    s.u.u.clock.id = id;
    s.u.u.clock.timeout = timeout;
    s.u.u.clock.flags = flags;
    return s;
}

static __wasi_subscription_t fd_sub(uint64_t userdata, __wasi_eventtype_t type, __wasi_fd_t fd) {
    __wasi_subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = userdata;
    s.u.tag = type;
    s.u.u.fd_read.file_descriptor = fd;
    return s;
}

static void poll_and_show(const char *label, __wasi_subscription_t *subs, int count) {
    __wasi_event_t events[8];
    __wasi_size_t n = 0;
    __wasi_errno_t e = __wasi_poll_oneoff(subs, events, (__wasi_size_t)count, &n);
    if (e != 0) {
        SHOW(label, "errno %d", e);
        return;
    }
    printf("%-44s %lu events:", label, (unsigned long)n);
    for (__wasi_size_t i = 0; i < n; i++)
        printf(" [ud %llu type %d err %d]", (unsigned long long)events[i].userdata,
               events[i].type, events[i].error);
    printf("\n");
}

int main(void) {
    puts("== clocks");
    __wasi_timestamp_t res;
    for (__wasi_clockid_t id = 0; id < 2; id++) {
        char label[64];
        snprintf(label, sizeof label, "clock_res_get %u", (unsigned)id);
        __wasi_errno_t e = __wasi_clock_res_get(id, &res);
        SHOW(label, "%s", e ? "error" : res > 0 && res <= 1000000000 ? "between 1ns and 1s" : "odd");
    }
    __wasi_timestamp_t real = now(__WASI_CLOCKID_REALTIME);
    SHOW("realtime after 2024", "%s", real > 1704067200ull * 1000000000ull ? "yes" : "no");
    SHOW("time() agrees with realtime", "%s", (uint64_t)time(NULL) + 2 >= real / 1000000000ull ? "yes" : "no");
    __wasi_timestamp_t m1 = now(__WASI_CLOCKID_MONOTONIC), m2 = now(__WASI_CLOCKID_MONOTONIC);
    SHOW("monotonic non-decreasing", "%s", m2 >= m1 ? "yes" : "no");
    struct timespec ts;
    SHOW("clock_gettime CLOCK_MONOTONIC", "%d", clock_gettime(CLOCK_MONOTONIC, &ts));

    puts("== random and yield");
    unsigned char a[64] = {0}, b[64] = {0};
    RAW("random_get 64", __wasi_random_get(a, sizeof a));
    RAW("random_get 64 again", __wasi_random_get(b, sizeof b));
    SHOW("two draws differ", "%s", memcmp(a, b, sizeof a) ? "yes" : "no");
    RAW("random_get 0", __wasi_random_get(a, 0));
    static unsigned char big[1 << 20];
    RAW("random_get 1 MiB", __wasi_random_get(big, sizeof big));
    int zeros = 0;
    for (size_t i = 0; i < sizeof big; i++) zeros += big[i] == 0;
    SHOW("1 MiB looks random", "%s", zeros < 8000 ? "yes" : "no");
    RAW("sched_yield", __wasi_sched_yield());

    puts("== poll_oneoff");
    __wasi_subscription_t subs[4];
    m1 = now(__WASI_CLOCKID_MONOTONIC);
    subs[0] = clock_sub(11, __WASI_CLOCKID_MONOTONIC, 20000000, 0);
    poll_and_show("sleep 20ms (monotonic, relative)", subs, 1);
    m2 = now(__WASI_CLOCKID_MONOTONIC);
    SHOW("  slept at least 20ms", "%s", m2 - m1 >= 20000000 ? "yes" : "no");
    m1 = now(__WASI_CLOCKID_MONOTONIC);
    subs[0] = clock_sub(12, __WASI_CLOCKID_MONOTONIC, m1 + 15000000, __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME);
    poll_and_show("sleep until +15ms (monotonic, absolute)", subs, 1);
    SHOW("  slept at least 15ms", "%s", now(__WASI_CLOCKID_MONOTONIC) - m1 >= 15000000 ? "yes" : "no");
    subs[0] = clock_sub(13, __WASI_CLOCKID_REALTIME, 10000000, 0);
    poll_and_show("sleep 10ms (realtime, relative)", subs, 1);
    m1 = now(__WASI_CLOCKID_MONOTONIC);
    subs[0] = clock_sub(14, __WASI_CLOCKID_MONOTONIC, 30000000, 0);
    subs[1] = clock_sub(15, __WASI_CLOCKID_MONOTONIC, 5000000000ull, 0);
    poll_and_show("two timers: only the first fires", subs, 2);
    SHOW("  returned before the second", "%s", now(__WASI_CLOCKID_MONOTONIC) - m1 < 4000000000ull ? "yes" : "no");
    subs[0] = clock_sub(16, __WASI_CLOCKID_MONOTONIC, 0, 0);
    poll_and_show("zero timeout", subs, 1);
    usleep(1000);
    SHOW("usleep returns", "%s", "yes");
    struct timespec nap = {0, 2000000};
    SHOW("nanosleep", "%d", nanosleep(&nap, NULL));

    int fd = open("/sandbox/poll.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    write(fd, "abc", 3);
    lseek(fd, 0, SEEK_SET);
    subs[0] = fd_sub(21, __WASI_EVENTTYPE_FD_READ, (__wasi_fd_t)fd);
    poll_and_show("file readable", subs, 1);
    subs[0] = fd_sub(22, __WASI_EVENTTYPE_FD_WRITE, (__wasi_fd_t)fd);
    subs[1] = clock_sub(23, __WASI_CLOCKID_MONOTONIC, 5000000000ull, 0);
    poll_and_show("file writable, timer not", subs, 2);
    subs[0] = fd_sub(24, __WASI_EVENTTYPE_FD_WRITE, 1);
    poll_and_show("stdout writable", subs, 1);
    subs[0] = fd_sub(25, __WASI_EVENTTYPE_FD_READ, 0);
    subs[1] = clock_sub(26, __WASI_CLOCKID_MONOTONIC, 5000000000ull, 0);
    poll_and_show("stdin readable (has data)", subs, 2);
    char line[32] = {0};
    SHOW("read stdin", "%zd", read(0, line, sizeof line - 1));
    subs[0] = fd_sub(27, __WASI_EVENTTYPE_FD_READ, 0);
    poll_and_show("stdin at end of file", subs, 1);

    subs[0] = fd_sub(28, __WASI_EVENTTYPE_FD_READ, 99);
    poll_and_show("bad descriptor", subs, 1);
    subs[0] = fd_sub(29, __WASI_EVENTTYPE_FD_READ, 3);
    poll_and_show("a directory", subs, 1);
    subs[0] = fd_sub(30, __WASI_EVENTTYPE_FD_WRITE, 0);
    poll_and_show("stdin for writing", subs, 1);
    subs[0] = clock_sub(31, __WASI_CLOCKID_PROCESS_CPUTIME_ID, 1000, 0);
    poll_and_show("a CPU-time clock", subs, 1);
    __wasi_event_t ev;
    __wasi_size_t n;
    RAW("no subscriptions", __wasi_poll_oneoff(subs, &ev, 0, &n));
    return 0;
}
