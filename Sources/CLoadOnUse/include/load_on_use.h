// libpcsclite and libcrypt, opened with dlopen the first time they are needed, not when
// the module is loaded: a code login (the common case in sshd and sudo) maps neither,
// and a host without libpcsclite can still use codes. The functions forward to the real
// ones with the same arguments; a library that cannot be loaded behaves as "no service"
// (PC/SC) or "failed" (crypt), so every caller fails closed.
#ifndef LOAD_ON_USE_H
#define LOAD_ON_USE_H
#include <winscard.h>
#include <reader.h>
#include <crypt.h>

LONG lou_SCardEstablishContext(DWORD scope, LPCVOID reserved1, LPCVOID reserved2, LPSCARDCONTEXT context);
LONG lou_SCardReleaseContext(SCARDCONTEXT context);
LONG lou_SCardListReaders(SCARDCONTEXT context, LPCSTR groups, LPSTR readers, LPDWORD length);
LONG lou_SCardConnect(SCARDCONTEXT context, LPCSTR reader, DWORD shareMode, DWORD protocols, LPSCARDHANDLE card, LPDWORD active);
LONG lou_SCardDisconnect(SCARDHANDLE card, DWORD disposition);
LONG lou_SCardGetStatusChange(SCARDCONTEXT context, DWORD timeout, SCARD_READERSTATE *states, DWORD count);
LONG lou_SCardTransmit(SCARDHANDLE card, const SCARD_IO_REQUEST *sendPci, LPCBYTE send, DWORD sendLength,
                       SCARD_IO_REQUEST *receivePci, LPBYTE receive, LPDWORD receiveLength);

char *lou_crypt_r(const char *phrase, const char *setting, struct crypt_data *data);
char *lou_crypt_gensalt_rn(const char *prefix, unsigned long count, const char *rbytes, int nrbytes, char *output, int size);
#endif
