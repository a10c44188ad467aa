/* libxcrypt (Debian's libcrypt-dev): yescrypt, the scheme of /etc/shadow. */
#include <crypt.h>
