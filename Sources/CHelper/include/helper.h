// The setuid helper's own C, for what Embedded Swift cannot do or call: its command line
// (no CommandLine) and syslog (variadic). Only the helper links this target,
// never the module, so none of these becomes an import of every sudo and sshd.
#ifndef HELPER_H
#define HELPER_H
/// argc as the process started.
int helper_argc(void);
/// argv[i], or NULL past the end.
const char *helper_argv(int i);
/// syslog as "smartotp-chkotp" at LOG_AUTHPRIV: LOG_NOTICE for a misuse (a caller's
/// mistake), LOG_ERR otherwise.
void helper_syslog(int misuse, const char *message);
#endif
