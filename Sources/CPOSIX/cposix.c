#define _GNU_SOURCE
#include "cposix.h"
#include <dlfcn.h>
#include <pthread.h>
#include <sys/un.h>

// What only a login through the setuid helper or the fleet client needs (starting a
// program, talking to it over a socket pair, waiting for it, its SIGCHLD), what only an
// error message needs (strerror), a first record (mkdir), a tap's challenge
// (arc4random_buf), the setuid helper's start (close_range) and groups= (getgrouplist, getgrnam_r): found in libc with dlsym at the first use rather than
// imported, because libpam opens a module with RTLD_NOW and every import is looked up at
// every load (0.7-1 K instructions each), also by the root logins that never start one.
static struct {
    int (*spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *, char *const [], char *const []);
    int (*actions_init)(posix_spawn_file_actions_t *);
    int (*actions_destroy)(posix_spawn_file_actions_t *);
    int (*actions_adddup2)(posix_spawn_file_actions_t *, int, int);
    int (*socketpair)(int, int, int, int [2]);
    int (*socket)(int, int, int);
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*getsockopt)(int, int, int, void *, socklen_t *);
    int (*setsockopt)(int, int, int, const void *, socklen_t);
    ssize_t (*send)(int, const void *, size_t, int);
    pid_t (*waitpid)(pid_t, int *, int);
    int (*sigaction)(int, const struct sigaction *, struct sigaction *);
    char *(*strerror)(int);
    int (*mkdir)(const char *, mode_t);
    void (*random)(void *, size_t);
    int (*close_range)(unsigned, unsigned, int);
    int (*getgrouplist)(const char *, gid_t, gid_t *, int *);
    int (*getgrnam_r)(const char *, struct group *, char *, size_t, struct group **);
    int (*getgrgid_r)(gid_t, struct group *, char *, size_t, struct group **);
} libc_on_use;
static pthread_once_t libc_once = PTHREAD_ONCE_INIT;

static void load_libc(void)
{
    *(void **)&libc_on_use.spawn = dlsym(RTLD_DEFAULT, "posix_spawn");
    *(void **)&libc_on_use.actions_init = dlsym(RTLD_DEFAULT, "posix_spawn_file_actions_init");
    *(void **)&libc_on_use.actions_destroy = dlsym(RTLD_DEFAULT, "posix_spawn_file_actions_destroy");
    *(void **)&libc_on_use.actions_adddup2 = dlsym(RTLD_DEFAULT, "posix_spawn_file_actions_adddup2");
    *(void **)&libc_on_use.socketpair = dlsym(RTLD_DEFAULT, "socketpair");
    *(void **)&libc_on_use.socket = dlsym(RTLD_DEFAULT, "socket");
    *(void **)&libc_on_use.connect = dlsym(RTLD_DEFAULT, "connect");
    *(void **)&libc_on_use.getsockopt = dlsym(RTLD_DEFAULT, "getsockopt");
    *(void **)&libc_on_use.setsockopt = dlsym(RTLD_DEFAULT, "setsockopt");
    *(void **)&libc_on_use.send = dlsym(RTLD_DEFAULT, "send");
    *(void **)&libc_on_use.waitpid = dlsym(RTLD_DEFAULT, "waitpid");
    *(void **)&libc_on_use.sigaction = dlsym(RTLD_DEFAULT, "sigaction");
    *(void **)&libc_on_use.strerror = dlsym(RTLD_DEFAULT, "strerror");
    *(void **)&libc_on_use.mkdir = dlsym(RTLD_DEFAULT, "mkdir");
    *(void **)&libc_on_use.random = dlsym(RTLD_DEFAULT, "arc4random_buf");
    *(void **)&libc_on_use.close_range = dlsym(RTLD_DEFAULT, "close_range");
    *(void **)&libc_on_use.getgrouplist = dlsym(RTLD_DEFAULT, "getgrouplist");
    *(void **)&libc_on_use.getgrnam_r = dlsym(RTLD_DEFAULT, "getgrnam_r");
    *(void **)&libc_on_use.getgrgid_r = dlsym(RTLD_DEFAULT, "getgrgid_r");
}

#define LIBC(name) (pthread_once(&libc_once, load_libc), libc_on_use.name)


int cposix_errno(void) { return errno; }

int cposix_close_from(int lowest)
{
    if (!LIBC(close_range)) { errno = ENOSYS; return -1; }
    return libc_on_use.close_range((unsigned)lowest, ~0U, 0);
}

int cposix_mkdir(const char *path, mode_t mode)
{
    if (!LIBC(mkdir)) { errno = ENOSYS; return -1; }
    return libc_on_use.mkdir(path, mode);
}

int cposix_getgrouplist(const char *user, gid_t group, gid_t *groups, int *count)
{
    if (!LIBC(getgrouplist)) { errno = ENOSYS; return -2; }
    return libc_on_use.getgrouplist(user, group, groups, count);
}

int cposix_getgrnam_r(const char *name, struct group *entry, char *buffer, size_t size, struct group **result)
{
    if (!LIBC(getgrnam_r)) { *result = NULL; return ENOSYS; }
    return libc_on_use.getgrnam_r(name, entry, buffer, size, result);
}

int cposix_getgrgid_r(gid_t id, struct group *entry, char *buffer, size_t size, struct group **result)
{
    if (!LIBC(getgrgid_r)) { *result = NULL; return ENOSYS; }
    return libc_on_use.getgrgid_r(id, entry, buffer, size, result);
}

int cposix_random(void *bytes, size_t count)
{
    if (!LIBC(random)) return -1;
    libc_on_use.random(bytes, count);
    return 0;
}

int cposix_open(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }

int cposix_exited(int status) { return WIFEXITED(status); }

int cposix_exit_status(int status) { return WEXITSTATUS(status); }

const char *cposix_dirent_name(const struct dirent *entry) { return entry->d_name; }

int cposix_set_signal(int signal, int ignore, struct sigaction *previous)
{
    // Zeroed: no flags and an empty sa_mask (glibc's sigset_t is a bit array, and
    // sigemptyset only clears it; one libc import fewer for the module).
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = ignore ? SIG_IGN : SIG_DFL;
    if (!LIBC(sigaction)) { errno = ENOSYS; return -1; }
    return libc_on_use.sigaction(signal, &action, previous);
}

int cposix_restore_signal(int signal, const struct sigaction *previous)
{
    if (!LIBC(sigaction)) { errno = ENOSYS; return -1; }
    return libc_on_use.sigaction(signal, previous, NULL);
}

// The paths of the programs the module runs, fixed when it is built (Package.swift's
// SMARTOTP_SBINDIR): a module option can name others, the environment cannot.
#ifndef SMARTOTP_SBINDIR
// ./install.sh's place, the one default: Package.swift defines another only when the
// build names one (debian/rules: /usr/sbin), and the fuzz build defines none.
#define SMARTOTP_SBINDIR "/usr/local/sbin"
#endif
const char *cposix_helper_path(void) { return SMARTOTP_SBINDIR "/smartotp-chkotp"; }
const char *cposix_fleet_client_path(void) { return SMARTOTP_SBINDIR "/smartotp-fleet"; }

int cposix_spawn(pid_t *pid, const char *path, int input, int output, int error, char *const argv[], char *const envp[])
{
    posix_spawn_file_actions_t actions;
    if (!LIBC(spawn) || !libc_on_use.actions_init || !libc_on_use.actions_destroy || !libc_on_use.actions_adddup2)
        return ENOSYS;
    if (libc_on_use.actions_init(&actions) != 0)
        return ENOMEM;
    int rc = libc_on_use.actions_adddup2(&actions, input, 0);
    if (rc == 0) rc = libc_on_use.actions_adddup2(&actions, output, 1);
    if (rc == 0) rc = libc_on_use.actions_adddup2(&actions, error, 2);
    if (rc == 0) rc = libc_on_use.spawn(pid, path, &actions, NULL, argv, envp);
    libc_on_use.actions_destroy(&actions);
    return rc;
}

int cposix_socketpair(int domain, int type, int protocol, int pair[2])
{
    if (!LIBC(socketpair)) { errno = ENOSYS; return -1; }
    return libc_on_use.socketpair(domain, type, protocol, pair);
}

int cposix_connect_root_socket(const char *path)
{
    struct sockaddr_un address;
    size_t length = strlen(path);
    if (length >= sizeof address.sun_path) { errno = ENAMETOOLONG; return -1; }
    if (!LIBC(socket) || !libc_on_use.connect || !libc_on_use.getsockopt) { errno = ENOSYS; return -1; }
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    // A byte at a time through a volatile pointer: the compiler would make a memcpy call of
    // memcpy, memmove or a plain loop here, one import more (10-module.sh's closed list).
    volatile char *to = address.sun_path;
    for (size_t i = 0; i < length; i++) to[i] = path[i];
    int fd = libc_on_use.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    // Before connect: a stuck agent's full backlog would block a Unix connect for ever
    // (Linux bounds it with SO_SNDTIMEO).
    if (cposix_socket_timeout(fd, 2) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    // The peer's credentials as they were when it listened: only root's agent is spoken to,
    // whoever could have made a socket at that path.
    struct ucred peer;
    socklen_t size = sizeof peer;
    if (libc_on_use.connect(fd, (const struct sockaddr *)&address, sizeof address) != 0
        || libc_on_use.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (size != sizeof peer || peer.uid != 0) {
        close(fd);
        errno = EPERM;
        return -1;
    }
    return fd;
}

int cposix_socket_timeout(int fd, int seconds)
{
    struct timeval wait = { .tv_sec = seconds, .tv_usec = 0 };
    if (!LIBC(setsockopt)) { errno = ENOSYS; return -1; }
    if (libc_on_use.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait) != 0) return -1;
    return libc_on_use.setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof wait);
}

ssize_t cposix_send(int fd, const void *bytes, size_t count, int flags)
{
    if (!LIBC(send)) { errno = ENOSYS; return -1; }
    return libc_on_use.send(fd, bytes, count, flags);
}

pid_t cposix_waitpid(pid_t pid, int *status, int options)
{
    if (!LIBC(waitpid)) { errno = ENOSYS; return -1; }
    return libc_on_use.waitpid(pid, status, options);
}

const char *cposix_strerror(int error)
{
    if (!LIBC(strerror)) return NULL;
    return libc_on_use.strerror(error);
}
