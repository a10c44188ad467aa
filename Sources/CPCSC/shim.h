/* PC/SC lite (Debian's libpcsclite-dev): the client API that talks to pcscd. */
#include <PCSC/winscard.h>
#include <PCSC/reader.h>
