// libcrypt, opened with dlopen the first time a simple password or a recovery code is
// checked or made, not when the module is loaded. The functions forward to the real ones;
// when the library cannot be loaded they fail (NULL), so every caller fails closed.
#ifndef CRYPT_ON_USE_H
#define CRYPT_ON_USE_H
#include <crypt.h>

char *lou_crypt_r(const char *phrase, const char *setting, struct crypt_data *data);
char *lou_crypt_gensalt_rn(const char *prefix, unsigned long count, const char *rbytes, int nrbytes, char *output, int size);
#endif
