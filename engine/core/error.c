#include "error.h"

#include <stdio.h>
#include <string.h>

const char *
unclip_status_str(unclip_status status)
{
    switch (status) {
#define UNCLIP_X_CASE(name, value, msg) \
    case name:                          \
        return msg;
        UNCLIP_STATUS_LIST(UNCLIP_X_CASE)
#undef UNCLIP_X_CASE
    }
    return "unknown status";
}

const char *
unclip_version(void)
{
    return UNCLIP_VERSION_STRING;
}

unclip_status
unclip__vfail(struct unclip_err *err, unclip_status code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

unclip_status
unclip__fail(struct unclip_err *err, unclip_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    unclip__vfail(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void
unclip__err_prefix(struct unclip_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char head[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    /* Shift the message right by "head: " and truncate it to the record's size. */
    size_t hl = strlen(head) + 2;
    if (hl >= UNCLIP_ERR_MAX)
        hl = UNCLIP_ERR_MAX - 1;
    size_t ml = strlen(err->msg);
    if (ml > UNCLIP_ERR_MAX - 1 - hl)
        ml = UNCLIP_ERR_MAX - 1 - hl;
    memmove(err->msg + hl, err->msg, ml);
    err->msg[hl + ml] = '\0';
    memcpy(err->msg, head, hl - 2);
    err->msg[hl - 2] = ':';
    err->msg[hl - 1] = ' ';
}

void
unclip__err_clear(struct unclip_err *err)
{
    if (err) {
        err->code = UNCLIP_OK;
        err->msg[0] = '\0';
    }
}

void
unclip__err_copy(const struct unclip_err *err, char *buf, size_t size)
{
    if (!buf || size == 0)
        return;
    snprintf(buf, size, "%s", err && err->msg[0] ? err->msg : "");
}
