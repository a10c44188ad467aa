#define _GNU_SOURCE
#include "helper.h"
#include <syslog.h>
#include <unistd.h>

// glibc calls .init_array functions with (argc, argv, envp) before main. Only the helper
// links this target; the PAM module never does.
static int saved_argc;
static char **saved_argv;

__attribute__((constructor)) static void helper_capture(int argc, char **argv, char **envp)
{
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}

int helper_argc(void) { return saved_argc; }

const char *helper_argv(int i) { return (i >= 0 && i < saved_argc && saved_argv) ? saved_argv[i] : 0; }

void helper_syslog(int misuse, const char *message)
{
    openlog("smartotp-chkotp", LOG_PID, LOG_AUTHPRIV);
    syslog(LOG_AUTHPRIV | (misuse ? LOG_NOTICE : LOG_ERR), "%s", message);
}

