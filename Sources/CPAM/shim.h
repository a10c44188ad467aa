/* Linux-PAM (Debian's libpam0g-dev): the module side of the API. */
#include <security/pam_modules.h>
#include <security/pam_ext.h>
#include <security/pam_appl.h>
#include <syslog.h>
