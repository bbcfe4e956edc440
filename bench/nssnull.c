/*
 * libnss_jbnull.so.2: an NSS module that knows nobody. Every call answers NOTFOUND at once,
 * with no system call and no allocation.
 *
 * bench/scale runs `id` through `files jbnull` beside `files jit` and `files` alone: what glibc
 * charges any second source (finding and loading its shared object, resolving its functions,
 * and calling it for each group `files` found under `[SUCCESS=merge]`) is then measured in the
 * same run, and the rest of the `files jit` figure is libnss_jit's own.
 *
 *   gcc -O2 -Wall -Wextra -shared -fPIC -o libnss_jbnull.so.2 bench/nssnull.c
 */
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stddef.h>
#include <sys/types.h>

enum nss_status _nss_jbnull_getpwnam_r(const char *name, struct passwd *pw, char *buf,
                                       size_t len, int *errnop);
enum nss_status _nss_jbnull_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len,
                                       int *errnop);
enum nss_status _nss_jbnull_getgrnam_r(const char *name, struct group *gr, char *buf,
                                       size_t len, int *errnop);
enum nss_status _nss_jbnull_getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t len,
                                       int *errnop);
enum nss_status _nss_jbnull_initgroups_dyn(const char *user, gid_t group, long int *start,
                                           long int *size, gid_t **groupsp, long int limit,
                                           int *errnop);

enum nss_status _nss_jbnull_getpwnam_r(const char *name, struct passwd *pw, char *buf,
                                       size_t len, int *errnop) {
    (void)name, (void)pw, (void)buf, (void)len, (void)errnop;
    return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_jbnull_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len,
                                       int *errnop) {
    (void)uid, (void)pw, (void)buf, (void)len, (void)errnop;
    return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_jbnull_getgrnam_r(const char *name, struct group *gr, char *buf,
                                       size_t len, int *errnop) {
    (void)name, (void)gr, (void)buf, (void)len, (void)errnop;
    return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_jbnull_getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t len,
                                       int *errnop) {
    (void)gid, (void)gr, (void)buf, (void)len, (void)errnop;
    return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_jbnull_initgroups_dyn(const char *user, gid_t group, long int *start,
                                           long int *size, gid_t **groupsp, long int limit,
                                           int *errnop) {
    (void)user, (void)group, (void)start, (void)size, (void)groupsp, (void)limit,
        (void)errnop;
    return NSS_STATUS_NOTFOUND;
}
