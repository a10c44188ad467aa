/* libpq, PostgreSQL's own client library (Debian: libpq-dev to build, libpq5 to run):
 * smartotpd's connections to PostgreSQL, TLS and authentication included. */
#include <postgresql/libpq-fe.h>
