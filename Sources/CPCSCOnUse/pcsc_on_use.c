#include "pcsc_on_use.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

static void *pcsc_handle;
static pthread_once_t pcsc_once = PTHREAD_ONCE_INIT;

static struct {
    LONG (*establish)(DWORD, LPCVOID, LPCVOID, LPSCARDCONTEXT);
    LONG (*release)(SCARDCONTEXT);
    LONG (*list)(SCARDCONTEXT, LPCSTR, LPSTR, LPDWORD);
    LONG (*connect)(SCARDCONTEXT, LPCSTR, DWORD, DWORD, LPSCARDHANDLE, LPDWORD);
    LONG (*disconnect)(SCARDHANDLE, DWORD);
    LONG (*status)(SCARDCONTEXT, DWORD, SCARD_READERSTATE *, DWORD);
    LONG (*transmit)(SCARDHANDLE, const SCARD_IO_REQUEST *, LPCBYTE, DWORD, SCARD_IO_REQUEST *, LPBYTE, LPDWORD);
} pcsc;

static void load_pcsc(void)
{
    pcsc_handle = dlopen("libpcsclite.so.1", RTLD_NOW | RTLD_LOCAL);
    if (pcsc_handle == NULL)
        return;
    *(void **)&pcsc.establish = dlsym(pcsc_handle, "SCardEstablishContext");
    *(void **)&pcsc.release = dlsym(pcsc_handle, "SCardReleaseContext");
    *(void **)&pcsc.list = dlsym(pcsc_handle, "SCardListReaders");
    *(void **)&pcsc.connect = dlsym(pcsc_handle, "SCardConnect");
    *(void **)&pcsc.disconnect = dlsym(pcsc_handle, "SCardDisconnect");
    *(void **)&pcsc.status = dlsym(pcsc_handle, "SCardGetStatusChange");
    *(void **)&pcsc.transmit = dlsym(pcsc_handle, "SCardTransmit");
    if (!pcsc.establish || !pcsc.release || !pcsc.list || !pcsc.connect || !pcsc.disconnect || !pcsc.status || !pcsc.transmit)
        pcsc.establish = NULL;  /* all or nothing */
}

/* When libpam unloads the module, its reference to the library goes too. */
__attribute__((destructor)) static void unload_pcsc(void)
{
    if (pcsc_handle)
        dlclose(pcsc_handle);
}

#define PCSC(call) do { pthread_once(&pcsc_once, load_pcsc); if (!pcsc.establish) return SCARD_E_NO_SERVICE; return call; } while (0)

LONG lou_SCardEstablishContext(DWORD scope, LPCVOID r1, LPCVOID r2, LPSCARDCONTEXT context) { PCSC(pcsc.establish(scope, r1, r2, context)); }
LONG lou_SCardReleaseContext(SCARDCONTEXT context) { PCSC(pcsc.release(context)); }
LONG lou_SCardListReaders(SCARDCONTEXT context, LPCSTR groups, LPSTR readers, LPDWORD length) { PCSC(pcsc.list(context, groups, readers, length)); }
LONG lou_SCardConnect(SCARDCONTEXT context, LPCSTR reader, DWORD share, DWORD protocols, LPSCARDHANDLE card, LPDWORD active)
{
    PCSC(pcsc.connect(context, reader, share, protocols, card, active));
}
LONG lou_SCardDisconnect(SCARDHANDLE card, DWORD disposition) { PCSC(pcsc.disconnect(card, disposition)); }
LONG lou_SCardGetStatusChange(SCARDCONTEXT context, DWORD timeout, SCARD_READERSTATE *states, DWORD count)
{
    PCSC(pcsc.status(context, timeout, states, count));
}
LONG lou_SCardTransmit(SCARDHANDLE card, const SCARD_IO_REQUEST *sendPci, LPCBYTE send, DWORD sendLength,
                       SCARD_IO_REQUEST *receivePci, LPBYTE receive, LPDWORD receiveLength)
{
    PCSC(pcsc.transmit(card, sendPci, send, sendLength, receivePci, receive, receiveLength));
}
