/* Error records shared by every engine layer.
 *
 * Internal functions that can fail take a `struct unclip_err *` (owned by the caller, usually
 * embedded in the context or object the public call was made on) and return an unclip_status.
 * unclip__fail() formats the detail into it and returns the code, so a failure reads
 *     return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': offsets past the end", ...);
 * A later unclip__fail() overwrites the record; unclip__err_prefix() adds context. */
#ifndef UNCLIP_CORE_ERROR_H
#define UNCLIP_CORE_ERROR_H

#include "unclip/unclip.h"

#include <stdarg.h>

#define UNCLIP_ERR_MAX 1024

struct unclip_err {
    unclip_status code;        /* UNCLIP_OK when no error is recorded */
    char msg[UNCLIP_ERR_MAX];  /* NUL-terminated detail, "" when none */
};

/* Records code and the formatted message (truncated to UNCLIP_ERR_MAX) and returns code.
 * err may be NULL (the message is then dropped). */
unclip_status unclip__fail(struct unclip_err *err, unclip_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
unclip_status unclip__vfail(struct unclip_err *err, unclip_status code, const char *fmt,
                            va_list ap);

/* Prepends "what: " to the recorded message (for adding context while unwinding). */
void unclip__err_prefix(struct unclip_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void unclip__err_clear(struct unclip_err *err);

/* Copies the message into a caller buffer (public API helpers); buf may be NULL. */
void unclip__err_copy(const struct unclip_err *err, char *buf, size_t size);

#endif
