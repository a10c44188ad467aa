// The C side of the POSIX layer: the system headers the Swift wrappers use, and the few
// calls Swift cannot make directly (errno is a macro; open and fcntl are variadic).
// Used by the POSIX layer, by OTPCore (explicit_bzero, arc4random_buf only), and by the
// module and the helper for the PAM and process constants; normal and Embedded Swift alike.
#ifndef CPOSIX_H
#define CPOSIX_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <syslog.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/// The setuid helper's and the fleet client's paths, as built (SMARTOTP_SBINDIR).
const char *cposix_helper_path(void);
const char *cposix_fleet_client_path(void);
/// errno of the calling thread.
int cposix_errno(void);

/// Closes every descriptor from `lowest` up (close_range(2)); 0 on success.
int cposix_close_from(int lowest);

/// mkdir(2), found at the first use (see cposix.c).
int cposix_mkdir(const char *path, mode_t mode);
/// getgrouplist(3) and getgrnam_r(3), found at the first use (groups= only).
int cposix_getgrouplist(const char *user, gid_t group, gid_t *groups, int *count);
int cposix_getgrnam_r(const char *name, struct group *entry, char *buffer, size_t size, struct group **result);
int cposix_getgrgid_r(gid_t id, struct group *entry, char *buffer, size_t size, struct group **result);
/// `count` bytes from the kernel's CSPRNG (arc4random_buf, found at the first use): 0, or
/// -1 when libc has none.
int cposix_random(void *bytes, size_t count);
/// open(2) with a mode (the variadic argument).
int cposix_open(const char *path, int flags, mode_t mode);
/// Whether a wait(2) status is a normal exit, and its code.
int cposix_exited(int status);
int cposix_exit_status(int status);
/// The d_name of a directory entry (a fixed array Swift sees as a tuple).
const char *cposix_dirent_name(const struct dirent *entry);
/// Sets a signal's disposition to SIG_DFL (0) or SIG_IGN (1); returns the previous one
/// in *previous (opaque, for cposix_restore_signal).
int cposix_set_signal(int signal, int ignore, struct sigaction *previous);
int cposix_restore_signal(int signal, const struct sigaction *previous);
/// posix_spawn with `input`, `output` and `error` as the child's 0, 1 and 2; socketpair,
/// send, waitpid and strerror: found in libc at the first use, not imported (cposix.c).
int cposix_spawn(pid_t *pid, const char *path, int input, int output, int error, char *const argv[], char *const envp[]);
int cposix_socketpair(int domain, int type, int protocol, int pair[2]);
ssize_t cposix_send(int fd, const void *bytes, size_t count, int flags);
/// A connected stream to the Unix socket at `path` (close-on-exec) whose listener runs as
/// root (SO_PEERCRED), or -1 and errno (EPERM: another user's socket). Its reads and
/// writes time out after 2 s (cposix_socket_timeout) until the caller says otherwise.
int cposix_connect_root_socket(const char *path);
/// Both directions of the socket `fd` time out after `seconds` (0: never).
int cposix_socket_timeout(int fd, int seconds);
pid_t cposix_waitpid(pid_t pid, int *status, int options);
const char *cposix_strerror(int error);

#endif
