#include "pam_shim.h"
#include <security/pam_ext.h>

void smartotp_pam_syslog(const pam_handle_t *pamh, int priority, const char *message)
{
    pam_syslog(pamh, priority, "%s", message);
}
