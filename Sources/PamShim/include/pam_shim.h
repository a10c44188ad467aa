/* pam_syslog is variadic, which Swift cannot call; Swift's withVaList works but casts
 * each argument dynamically (its cost is in Benchmarks/RESULTS.md). This fixed-arity
 * wrapper is the module's one C function of its own (CPOSIX, CPCSCOnUse and CCryptOnUse are shared). */
#ifndef SMARTOTP_PAM_SHIM_H
#define SMARTOTP_PAM_SHIM_H
#include <security/pam_modules.h>

/* pam_syslog(pamh, priority, "%s", message): the message is never a format string. */
void smartotp_pam_syslog(const pam_handle_t *pamh, int priority, const char *message);

#endif
