#include "pam_shim.h"
#include <syslog.h>

void smartotp_pam_syslog(const char *service, const char *step, int priority, const char *message)
{
    /* pam_syslog's own words ("MODULE(SERVICE:STEP): "), without its two asprintf calls. */
    syslog(LOG_AUTHPRIV | priority, "pam_smartotp(%s:%s): %s", service, step, message);
}
