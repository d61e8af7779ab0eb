/* Host memory and fault injection.
 *
 * Every host allocation of the engine goes through unclip__malloc / unclip__calloc /
 * unclip__realloc so that tests can make the k-th one fail (issue: reliability). The same
 * counter mechanism covers device allocations, queue submits and fence waits, which the
 * Vulkan layer checks with unclip__fault_hit().
 *
 * Sizes are checked for overflow: unclip__calloc(n, size) and unclip__alloc_array() return
 * NULL when n * size does not fit in size_t. */
#ifndef UNCLIP_CORE_ALLOC_H
#define UNCLIP_CORE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *unclip__malloc(size_t size);
void *unclip__calloc(size_t n, size_t size);
void *unclip__realloc(void *ptr, size_t size);
void  unclip__free(void *ptr);
char *unclip__strdup(const char *s);

enum unclip_fault_site {
    UNCLIP_FAULT_HOST_ALLOC = 0, /* unclip__malloc / calloc / realloc / strdup return NULL    */
    UNCLIP_FAULT_DEVICE_ALLOC,   /* a device buffer or memory block (UNCLIP_E_DEVICE_NOMEM)  */
    UNCLIP_FAULT_SUBMIT,         /* vkQueueSubmit fails (UNCLIP_E_VULKAN)                    */
    UNCLIP_FAULT_FENCE_WAIT,  /* the wait times out (UNCLIP_E_TIMEOUT)                    */
    UNCLIP_FAULT_DEVICE_LOST, /* at a fence wait: the device reports VK_ERROR_DEVICE_LOST
                                 (UNCLIP_E_DEVICE_LOST; the context must be recreated)      */
    UNCLIP_FAULT_N_SITES
};

/* Test hook: make the k-th event (1-based, counted from this call) at `site` fail;
 * k = 0 disarms. Counting is process-wide and thread-safe. */
void     unclip__fault_arm(enum unclip_fault_site site, uint64_t k);
/* Number of events seen at `site` since the last arm (for "every k a run reaches" loops). */
uint64_t unclip__fault_count(enum unclip_fault_site site);
/* Called at each event; true when this one must fail. */
bool     unclip__fault_hit(enum unclip_fault_site site);

/* Test hook: fn(site, index, user) is called at every event (index as counted by
 * unclip__fault_count) from inside unclip__fault_hit, e.g. to record each event's call stack
 * and pick one k per distinct stack. NULL stops it. */
typedef void (*unclip_fault_observer)(enum unclip_fault_site site, uint64_t index, void *user);
void     unclip__fault_observe(unclip_fault_observer fn, void *user);

/* Host blocks allocated through the functions above and not freed yet (process-wide). A
 * cheap leak check for tests in every build: compare before and after an operation that
 * must not keep memory. Memory freed with plain free() instead of unclip__free() makes it
 * drift. */
int64_t  unclip__alloc_live(void);

#endif
