#include "crypt_on_use.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

static void *crypt_handle;
static pthread_once_t crypt_once = PTHREAD_ONCE_INIT;

static struct {
    char *(*crypt_r)(const char *, const char *, struct crypt_data *);
    char *(*gensalt_rn)(const char *, unsigned long, const char *, int, char *, int);
} xcrypt;

static void load_crypt(void)
{
    crypt_handle = dlopen("libcrypt.so.1", RTLD_NOW | RTLD_LOCAL);
    if (crypt_handle == NULL)
        return;
    *(void **)&xcrypt.crypt_r = dlsym(crypt_handle, "crypt_r");
    *(void **)&xcrypt.gensalt_rn = dlsym(crypt_handle, "crypt_gensalt_rn");
    if (!xcrypt.crypt_r || !xcrypt.gensalt_rn)
        xcrypt.crypt_r = NULL;
}

/* When libpam unloads the module, its reference to the library goes too. */
__attribute__((destructor)) static void unload_crypt(void)
{
    if (crypt_handle)
        dlclose(crypt_handle);
}

char *lou_crypt_r(const char *phrase, const char *setting, struct crypt_data *data)
{
    pthread_once(&crypt_once, load_crypt);
    return xcrypt.crypt_r ? xcrypt.crypt_r(phrase, setting, data) : NULL;
}

char *lou_crypt_gensalt_rn(const char *prefix, unsigned long count, const char *rbytes, int nrbytes, char *output, int size)
{
    pthread_once(&crypt_once, load_crypt);
    return xcrypt.crypt_r ? xcrypt.gensalt_rn(prefix, count, rbytes, nrbytes, output, size) : NULL;
}
