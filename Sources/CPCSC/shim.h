/* PC/SC lite (Debian's libpcsclite-dev): the client API that talks to pcscd. */
#include <winscard.h>
#include <reader.h>
