/* libcrypto (OpenSSL 3, Debian's libssl-dev): HMAC, PBKDF2, RAND_bytes, OPENSSL_cleanse, CRYPTO_memcmp. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
