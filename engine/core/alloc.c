#include "alloc.h"

#include "unclip/unclip.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t fault_target[UNCLIP_FAULT_N_SITES];
static _Atomic uint64_t fault_seen[UNCLIP_FAULT_N_SITES];
static _Atomic int64_t live_blocks; /* successful allocations minus frees of non-NULL */
static unclip_fault_observer _Atomic observer;
static void *_Atomic observer_user;

void
unclip__fault_observe(unclip_fault_observer fn, void *user)
{
    atomic_store(&observer_user, user);
    atomic_store(&observer, fn);
}

int64_t
unclip__alloc_live(void)
{
    return atomic_load(&live_blocks);
}

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
    unclip_fault_observer fn = atomic_load(&observer);
    if (fn)
        fn(site, n, atomic_load(&observer_user));
    return k != 0 && n == k;
}

void *
unclip__malloc(size_t size)
{
    if (unclip__fault_hit(UNCLIP_FAULT_HOST_ALLOC))
        return NULL;
    void *p = malloc(size ? size : 1);
    if (p)
        atomic_fetch_add(&live_blocks, 1);
    return p;
}

void *
unclip__calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    if (unclip__fault_hit(UNCLIP_FAULT_HOST_ALLOC))
        return NULL;
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p)
        atomic_fetch_add(&live_blocks, 1);
    return p;
}

void *
unclip__realloc(void *ptr, size_t size)
{
    if (unclip__fault_hit(UNCLIP_FAULT_HOST_ALLOC))
        return NULL;
    void *p = realloc(ptr, size ? size : 1);
    if (p && !ptr)
        atomic_fetch_add(&live_blocks, 1);
    return p;
}

void
unclip__free(void *ptr)
{
    if (ptr)
        atomic_fetch_sub(&live_blocks, 1);
    free(ptr);
}

void
unclip_free(void *ptr)
{
    unclip__free(ptr);
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
