/* Shared by the fuzz targets in tests/fuzz/ (libFuzzer entry points) and by replay.c, the
 * driver that runs the same targets over the committed corpus in the normal build.
 *
 * Contract of a target: LLVMFuzzerTestOneInput() accepts ANY bytes, returns 0, and aborts
 * (FZ_ASSERT -> __builtin_trap) only when the engine breaks a promise of its headers (an
 * accepted file whose tensors point outside it, a status without a message, ...). Crashes,
 * sanitizer reports and leaks are what the fuzzer looks for.
 *
 * Each input runs twice: once as is, counting the host allocations it makes, and once more
 * with the k-th of them failing (k from a hash of the input), so the error paths of every
 * malformed input are fuzzed under out-of-memory as well. The faulted run must end with the
 * first run's status or with UNCLIP_E_NOMEM (an allocation failure reported as anything
 * else would mislead the user). */
#ifndef UNCLIP_TESTS_FUZZ_H
#define UNCLIP_TESTS_FUZZ_H

#include "core/alloc.h"
#include "core/error.h"

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FZ_ASSERT(cond, ...)                                                        \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "fuzz: broken promise %s:%d: %s: ", __FILE__, __LINE__, \
                    #cond);                                                         \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, "\n");                                                  \
            __builtin_trap();                                                       \
        }                                                                           \
    } while (0)

/* Every failure carries a negative status from the public list and a message. */
static inline void
fz_check_failure(unclip_status st, const struct unclip_err *err, const char *what)
{
    FZ_ASSERT(st < 0 && st >= UNCLIP_E_INTERNAL && unclip_status_str(st)[0],
              "%s: status %d", what, (int)st);
    FZ_ASSERT(err->msg[0] != '\0', "%s: status %d without a message", what, (int)st);
}

static inline uint64_t
fz_hash(const uint8_t *d, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

/* Runs fn(data, size) as described above; fn returns the status of the main call. */
static inline void
fz_run_with_fault(unclip_status (*fn)(const uint8_t *, size_t), const uint8_t *data,
                  size_t size)
{
    unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
    unclip_status first = fn(data, size);
    uint64_t n = unclip__fault_count(UNCLIP_FAULT_HOST_ALLOC);
    if (n > 0) {
        uint64_t k = 1 + fz_hash(data, size) % n;
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, k);
        unclip_status second = fn(data, size);
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
        FZ_ASSERT(second == first || second == UNCLIP_E_NOMEM,
                  "host allocation %llu of %llu failed: status %d, without the fault %d",
                  (unsigned long long)k, (unsigned long long)n, (int)second, (int)first);
    }
}

/* A new scratch folder (g_free the path): in /dev/shm when it is there, since rewriting files
 * on a disk costs milliseconds per input (truncation, discard). */
static inline char *
fz_scratch_dir(const char *tmpl)
{
    char *dir = NULL;
    if (!getenv("TMPDIR") && g_file_test("/dev/shm", G_FILE_TEST_IS_DIR)) {
        dir = g_build_filename("/dev/shm", tmpl, NULL);
        if (!g_mkdtemp(dir)) {
            g_free(dir);
            dir = NULL;
        }
    }
    return dir ? dir : g_dir_make_tmp(tmpl, NULL);
}

/* Writes a scratch file (no fsync, unlike g_file_set_contents: thousands per second). */
static inline bool
fz_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

#endif
