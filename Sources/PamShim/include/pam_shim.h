/* pam_syslog is variadic, which Swift cannot call; Swift's withVaList works but casts
 * each argument dynamically (a conformance scan: 280 k instructions per login). This
 * fixed-arity wrapper is the only C in the module. */
#ifndef SMARTOTP_PAM_SHIM_H
#define SMARTOTP_PAM_SHIM_H
#include <security/pam_modules.h>

/* pam_syslog(pamh, priority, "%s", message): the message is never a format string. */
void smartotp_pam_syslog(const pam_handle_t *pamh, int priority, const char *message);

#endif
