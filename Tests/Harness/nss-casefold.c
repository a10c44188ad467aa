/* A name service that, like SSSD or winbind against Active Directory, answers a user name
 * in any letter case with the user's own spelling: "ALICE" resolves to "alice". Loaded by
 * nss_wrapper (NSS_WRAPPER_MODULE_SO_PATH, NSS_WRAPPER_MODULE_FN_PREFIX=casefold) in
 * 30-pam, never installed. Only names with an upper-case letter are answered here; the
 * rest are left to nss_wrapper's own passwd file. */
#include <ctype.h>
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <string.h>

enum nss_status _nss_casefold_getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len, int *err)
{
    size_t n = strlen(name);
    int upper = 0;
    for (size_t i = 0; i < n; i++) upper |= isupper((unsigned char)name[i]);
    if (!upper) return NSS_STATUS_NOTFOUND;
    static const char shell[] = "/usr/sbin/nologin", home[] = "/nonexistent";
    if (n + 1 + sizeof shell + sizeof home + 2 > len) { *err = ERANGE; return NSS_STATUS_TRYAGAIN; }
    char *p = buf;
    for (size_t i = 0; i <= n; i++) p[i] = (char)tolower((unsigned char)name[i]);
    pw->pw_name = p; p += n + 1;
    pw->pw_passwd = p; *p++ = 'x'; *p++ = '\0';
    pw->pw_uid = 40999; pw->pw_gid = 65534;
    pw->pw_gecos = p - 1;
    pw->pw_dir = memcpy(p, home, sizeof home); p += sizeof home;
    pw->pw_shell = memcpy(p, shell, sizeof shell);
    return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_casefold_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, int *err)
{
    (void)uid; (void)pw; (void)buf; (void)len; (void)err;
    return NSS_STATUS_NOTFOUND;
}
