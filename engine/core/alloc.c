#include "alloc.h"

#include "unclip/unclip.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t fault_target[UNCLIP_FAULT_N_SITES];
static _Atomic uint64_t fault_seen[UNCLIP_FAULT_N_SITES];

void
unclip__fault_arm(enum unclip_fault_site site, uint64_t k)
{
    atomic_store(&fault_seen[site], 0);
    atomic_store(&fault_target[site], k);
}

uint64_t
unclip__fault_count(enum unclip_fault_site site)
{
    return atomic_load(&fault_seen[site]);
}

bool
unclip__fault_hit(enum unclip_fault_site site)
{
    uint64_t n = atomic_fetch_add(&fault_seen[site], 1) + 1;
    uint64_t k = atomic_load(&fault_target[site]);
    return k != 0 && n == k;
}

void *
unclip__malloc(size_t size)
{
    if (unclip__fault_hit(UNCLIP_FAULT_HOST_ALLOC))
        return NULL;
    return malloc(size ? size : 1);
}

void *
unclip__calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    if (unclip__fault_hit(UNCLIP_FAULT_HOST_ALLOC))
        return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *
unclip__realloc(void *ptr, size_t size)
{
    if (unclip__fault_hit(UNCLIP_FAULT_HOST_ALLOC))
        return NULL;
    return realloc(ptr, size ? size : 1);
}

void
unclip__free(void *ptr)
{
    free(ptr);
}

void
unclip_free(void *ptr)
{
    free(ptr);
}

char *
unclip__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = unclip__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
