#include "cposix.h"

int cposix_errno(void) { return errno; }

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
    return sigaction(signal, &action, previous);
}

int cposix_restore_signal(int signal, const struct sigaction *previous)
{
    return sigaction(signal, previous, NULL);
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
