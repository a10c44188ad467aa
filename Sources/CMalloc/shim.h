/* glibc's malloc.h, which Swift's Glibc module leaves out: smartotpd's settings for a
 * process that runs for months (mallopt) and its own account in /metrics (mallinfo2). */
#include <malloc.h>
