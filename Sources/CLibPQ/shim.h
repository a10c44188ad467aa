/* libpq, PostgreSQL's own client library (Debian: libpq-dev to build, libpq5 to run):
 * smartotpd's connections to PostgreSQL, TLS and authentication included. */
#include <postgresql/libpq-fe.h>
/* What waits on libpq's sockets (PGReactor): epoll, and an eventfd to stop it. Swift's Glibc
 * module leaves these Linux headers out. */
#include <sys/epoll.h>
#include <sys/eventfd.h>
