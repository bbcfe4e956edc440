/*
 * nssbench: times NSS lookups through glibc, whatever /etc/nsswitch.conf says (bench/run
 * switches it between `files`, `files jit` and sss scenarios and starts a fresh process for
 * each, because glibc reads nsswitch.conf once per process).
 *
 *   nssbench -n HIT_NAME -m MISS_NAME -u HIT_UID -g GROUPS_USER [-r ROUNDS] [-t MS_PER_ROUND]
 *            [-s PATH] [-o OP]
 *
 * For each operation (getpwnam_r hit, getpwnam_r miss, getpwuid_r hit, getgrouplist) it
 * checks the answer first (a "hit" that misses would time the wrong path), warms up (module
 * loading, jit's snapshot validation, sss's memory cache fill happen on the first calls), picks
 * an iteration count so one round lasts about MS_PER_ROUND, then reports the median and the
 * minimum ns/op over ROUNDS rounds (CLOCK_MONOTONIC). With -s it also times lstat(PATH), the
 * price of one syscall on this host: glibc stats nsswitch.conf on every lookup, `files` opens
 * and reads its file every time, and libnss_jit lstat()s the snapshot once per call, so
 * syscalls set the floor of every figure. -o runs only the operation named OP. Output, one line
 * per operation:
 *
 *   op=getpwnam_hit median_ns=812.4 min_ns=790.1 iters=123456 result=uid:70005
 *
 * With -F (first-lookup mode, bench/scale) it instead makes, in this fresh process, one
 * getpwnam_r of HIT_NAME (timed: what a new process pays for its first name lookup, module
 * loading and nsswitch.conf parsing included), then one getpwuid_r, one getgrouplist and one
 * getpwnam_r of MISS_NAME, and prints what the process's memory grew by over those lookups
 * (malloc'ed bytes from mallinfo2, and VmRSS):
 *
 *   op=first first_ns=123456 heap_kib=12.0 rss_kib=345 result=uid:70005
 *
 * Exit status 1 when an answer is wrong (not found for a hit, found for a miss).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static const char *hit_name, *miss_name, *groups_user, *stat_path, *only_op;
static uid_t hit_uid;
static int rounds = 7;
static double ms_per_round = 60.0;

/* Caller-owned buffers, as a long-running daemon would keep them. 64 KiB so a group line with
 * 10 000 members never needs an ERANGE retry inside the timed loop. */
static char buf[1 << 16];
static gid_t gbuf[4096];

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Each op returns a small integer describing its answer (uid, -1 for not found, group count),
 * so the caller can verify it and so the compiler cannot drop the call. */
static long op_getpwnam_hit(void)
{
    struct passwd pw, *res = NULL;
    getpwnam_r(hit_name, &pw, buf, sizeof buf, &res);
    return res ? (long)res->pw_uid : -1;
}

static long op_getpwnam_miss(void)
{
    struct passwd pw, *res = NULL;
    getpwnam_r(miss_name, &pw, buf, sizeof buf, &res);
    return res ? (long)res->pw_uid : -1;
}

static long op_getpwuid_hit(void)
{
    struct passwd pw, *res = NULL;
    getpwuid_r(hit_uid, &pw, buf, sizeof buf, &res);
    return res ? (long)res->pw_uid : -1;
}

static gid_t groups_primary;

static long op_getgrouplist(void)
{
    int n = (int)(sizeof gbuf / sizeof gbuf[0]);
    if (getgrouplist(groups_user, groups_primary, gbuf, &n) < 0)
        return -2;
    return n;
}

static long op_lstat(void)
{
    struct stat st;
    return lstat(stat_path, &st) == 0 ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Returns 0 when the answer is as expected. */
static int bench(const char *name, long (*op)(void), long expect_min, long expect_max,
                 const char *what)
{
    if (only_op && strcmp(only_op, name) != 0)
        return 0;
    long r = op();
    if (r < expect_min || r > expect_max) {
        printf("op=%s error=unexpected-answer result=%ld expected=%ld..%ld\n", name, r,
               expect_min, expect_max);
        return 1;
    }
    for (int i = 0; i < 20; i++)
        op();

    /* Calibrate: double the count until one batch takes at least a tenth of a round. */
    long iters = 1;
    for (;;) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++)
            op();
        double dt = now_ns() - t0;
        if (dt >= ms_per_round * 1e6 / 10 || iters >= (1L << 26)) {
            double per = dt / (double)iters;
            iters = (long)(ms_per_round * 1e6 / (per > 1 ? per : 1));
            if (iters < 5)
                iters = 5;
            break;
        }
        iters *= 2;
    }

    double per_op[64];
    int nr = rounds > 64 ? 64 : rounds;
    for (int k = 0; k < nr; k++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++)
            op();
        per_op[k] = (now_ns() - t0) / (double)iters;
    }
    qsort(per_op, (size_t)nr, sizeof per_op[0], cmp_double);
    printf("op=%s median_ns=%.1f min_ns=%.1f iters=%ld result=%s:%ld\n", name, per_op[nr / 2],
           per_op[0], iters, what, r);
    fflush(stdout);
    return 0;
}

static long vm_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static double heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (double)mi.uordblks + (double)mi.hblkhd;
}

/* -F: the first lookups of a fresh process (see the header comment). */
static int first_lookup(long uid)
{
    double heap0 = heap_bytes();
    long rss0 = vm_rss_kib();
    double t0 = now_ns();
    long r = op_getpwnam_hit();
    double first = now_ns() - t0;
    struct passwd pw, *res = NULL;
    getpwnam_r(groups_user, &pw, buf, sizeof buf, &res);
    groups_primary = res ? res->pw_gid : 0;
    long u = op_getpwuid_hit();
    long g = res ? op_getgrouplist() : -3;
    long m = op_getpwnam_miss();
    double heap1 = heap_bytes();
    long rss1 = vm_rss_kib();
    if (r != uid || u != uid || g < 1 || m != -1) {
        printf("op=first error=unexpected-answer result=%ld/%ld/%ld/%ld\n", r, u, g, m);
        return 1;
    }
    printf("op=first first_ns=%.0f heap_kib=%.1f rss_kib=%ld result=uid:%ld\n", first,
           (heap1 - heap0) / 1024.0, rss1 - rss0, r);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: nssbench -n HIT_NAME -m MISS_NAME -u HIT_UID -g GROUPS_USER "
                    "[-r ROUNDS] [-t MS_PER_ROUND] [-s PATH] [-o OP]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int c, first = 0;
    long uid = -1;
    while ((c = getopt(argc, argv, "n:m:u:g:r:t:s:o:F")) != -1) {
        switch (c) {
        case 'n': hit_name = optarg; break;
        case 'm': miss_name = optarg; break;
        case 'u': uid = strtol(optarg, NULL, 10); break;
        case 'g': groups_user = optarg; break;
        case 'r': rounds = atoi(optarg); break;
        case 't': ms_per_round = atof(optarg); break;
        case 's': stat_path = optarg; break;
        case 'o': only_op = optarg; break;
        case 'F': first = 1; break;
        default: usage();
        }
    }
    if (!hit_name || !miss_name || !groups_user || uid < 0 || rounds < 1 || ms_per_round <= 0)
        usage();
    hit_uid = (uid_t)uid;
    if (first)
        return first_lookup(uid);

    /* getgrouplist needs the user's primary gid; look it up once, outside the timing. */
    struct passwd pw, *res = NULL;
    getpwnam_r(groups_user, &pw, buf, sizeof buf, &res);
    if (!res) {
        printf("op=getgrouplist error=user-not-found user=%s\n", groups_user);
        return 1;
    }
    groups_primary = res->pw_gid;

    int bad = 0;
    bad |= bench("getpwnam_hit", op_getpwnam_hit, uid, uid, "uid");
    bad |= bench("getpwnam_miss", op_getpwnam_miss, -1, -1, "uid");
    bad |= bench("getpwuid_hit", op_getpwuid_hit, uid, uid, "uid");
    bad |= bench("getgrouplist", op_getgrouplist, 1, 4096, "groups");
    if (stat_path)
        bad |= bench("syscall_lstat", op_lstat, 0, 0, "rc");
    return bad;
}
