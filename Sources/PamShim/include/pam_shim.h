/* syslog is variadic, which Swift cannot call; Swift's withVaList works but casts each
 * argument dynamically (its cost is in Benchmarks/RESULTS.md). This fixed-arity wrapper is
 * the module's one C function of its own (CPOSIX, CPCSCOnUse and CCryptOnUse are shared). */
#ifndef SMARTOTP_PAM_SHIM_H
#define SMARTOTP_PAM_SHIM_H

/* A line as pam_syslog(3) writes it — "pam_smartotp(SERVICE:STEP): MESSAGE" at
 * LOG_AUTHPRIV — straight through syslog(3): pam_syslog formats the prefix and the message
 * with an asprintf each first. The message is never a format string. */
void smartotp_pam_syslog(const char *service, const char *step, int priority, const char *message);

#endif
