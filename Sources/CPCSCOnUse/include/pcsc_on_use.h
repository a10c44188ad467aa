// libpcsclite, opened with dlopen the first time a tap needs it, not when the module is
// loaded: a code login (the common case in sshd and sudo) never maps it, and a host
// without libpcsclite can still use codes. The functions forward to the real ones with
// the same arguments; when the library cannot be loaded they answer SCARD_E_NO_SERVICE,
// so every caller fails closed.
#ifndef PCSC_ON_USE_H
#define PCSC_ON_USE_H
#include <winscard.h>
#include <reader.h>

LONG lou_SCardEstablishContext(DWORD scope, LPCVOID reserved1, LPCVOID reserved2, LPSCARDCONTEXT context);
LONG lou_SCardReleaseContext(SCARDCONTEXT context);
LONG lou_SCardListReaders(SCARDCONTEXT context, LPCSTR groups, LPSTR readers, LPDWORD length);
LONG lou_SCardConnect(SCARDCONTEXT context, LPCSTR reader, DWORD shareMode, DWORD protocols, LPSCARDHANDLE card, LPDWORD active);
LONG lou_SCardDisconnect(SCARDHANDLE card, DWORD disposition);
LONG lou_SCardGetStatusChange(SCARDCONTEXT context, DWORD timeout, SCARD_READERSTATE *states, DWORD count);
LONG lou_SCardTransmit(SCARDHANDLE card, const SCARD_IO_REQUEST *sendPci, LPCBYTE send, DWORD sendLength,
                       SCARD_IO_REQUEST *receivePci, LPBYTE receive, LPDWORD receiveLength);
#endif
