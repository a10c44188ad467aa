// The setuid helper's own C, for what Embedded Swift cannot do or call: its command line
// (no CommandLine), syslog (variadic), close_range. Only the helper links this target,
// never the module, so none of these becomes an import of every sudo and sshd.
#ifndef HELPER_H
#define HELPER_H
/// argc as the process started.
int helper_argc(void);
/// argv[i], or NULL past the end.
const char *helper_argv(int i);
/// syslog(LOG_AUTHPRIV | priority, "%s", message) as "smartotp-chkotp".
void helper_syslog(int priority, const char *message);
/// Closes every descriptor from `lowest` up (close_range(2)); 0 on success.
int helper_close_from(int lowest);
#endif
