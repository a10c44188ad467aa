// The setuid helper's command line, for Embedded Swift (which has no CommandLine).
#ifndef HELPER_ARGS_H
#define HELPER_ARGS_H
/// argc as the process started.
int helper_argc(void);
/// argv[i], or NULL past the end.
const char *helper_argv(int i);
#endif
