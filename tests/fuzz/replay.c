/* Replays fuzz inputs through a fuzz target without libFuzzer, in the normal build (and the
 * sanitizer build): every file of the given folders (the committed corpus, crash reproducers
 * included), then `--mutate N` deterministic mutations of each (bit flips, byte changes,
 * truncations, cut-and-splice), so the parsers keep being exercised by every `meson test`.
 *
 *   replay-<target> [--mutate N] DIR|FILE...
 *
 * Exit status 0 when every input ran (a broken promise traps, a sanitizer aborts). */
#include "fuzz.h"

#include <glib.h>
#include <string.h>

#ifndef FUZZ_TARGET_NAME
#define FUZZ_TARGET_NAME "fuzz"
#endif

static uint64_t
next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One mutation of src into a new buffer (g_free). */
static uint8_t *
mutate(const uint8_t *src, size_t n, uint64_t *rng, size_t *out_n)
{
    uint8_t *d = g_malloc(n + 16);
    memcpy(d, src, n);
    size_t m = n;
    int edits = 1 + (int)(next(rng) % 4);
    for (int e = 0; e < edits; e++) {
        uint64_t r = next(rng);
        size_t at = m ? (size_t)(next(rng) % m) : 0;
        switch (r % 6) {
        case 0: /* flip a bit */
            if (m)
                d[at] ^= (uint8_t)(1u << (r >> 8) % 8);
            break;
        case 1: /* interesting byte */
            if (m) {
                static const uint8_t v[] = {0, 0xff, '"', '{', '}', '[', ']', ',', ':', '\\',
                                            '0', '9', '-', 'e', '.', ' ', '\n', 0x80, 0xc3};
                d[at] = v[(r >> 8) % sizeof v];
            }
            break;
        case 2: /* truncate */
            m = at;
            break;
        case 3: /* delete a run */
            if (m) {
                size_t len = 1 + (size_t)((r >> 8) % 16);
                if (len > m - at)
                    len = m - at;
                memmove(d + at, d + at + len, m - at - len);
                m -= len;
            }
            break;
        case 4: /* insert a byte */
            if (m < n + 16) {
                memmove(d + at + 1, d + at, m - at);
                d[at] = (uint8_t)(r >> 8);
                m++;
            }
            break;
        default: /* copy a run over another place (repeats structure) */
            if (m > 1) {
                size_t from = (size_t)(next(rng) % m);
                size_t len = 1 + (size_t)((r >> 8) % 32);
                if (len > m - from)
                    len = m - from;
                if (len > m - at)
                    len = m - at;
                memmove(d + at, d + from, len);
            }
            break;
        }
    }
    *out_n = m;
    return d;
}

static int n_files;
static long long n_mutated;
static int n_mutations;

static void
run_file(const char *path)
{
    gchar *bytes = NULL;
    gsize n = 0;
    GError *ge = NULL;
    if (!g_file_get_contents(path, &bytes, &n, &ge)) {
        fprintf(stderr, "replay: %s\n", ge->message);
        exit(1);
    }
    LLVMFuzzerTestOneInput((const uint8_t *)bytes, n);
    n_files++;
    uint64_t rng = fz_hash((const uint8_t *)path, strlen(path)) ^ n;
    for (int i = 0; i < n_mutations; i++) {
        size_t m = 0;
        uint8_t *d = mutate((const uint8_t *)bytes, n, &rng, &m);
        LLVMFuzzerTestOneInput(d, m);
        g_free(d);
        n_mutated++;
    }
    g_free(bytes);
}

static int
cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int
main(int argc, char **argv)
{
    LLVMFuzzerInitialize(&argc, &argv);
    gint64 t0 = g_get_monotonic_time();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mutate") && i + 1 < argc) {
            n_mutations = atoi(argv[++i]);
            continue;
        }
        if (!g_file_test(argv[i], G_FILE_TEST_IS_DIR)) {
            run_file(argv[i]);
            continue;
        }
        GDir *dir = g_dir_open(argv[i], 0, NULL);
        if (!dir) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            return 1;
        }
        GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
        const char *nm;
        while ((nm = g_dir_read_name(dir)))
            if (nm[0] != '.')
                g_ptr_array_add(names, g_build_filename(argv[i], nm, NULL));
        g_dir_close(dir);
        qsort(names->pdata, names->len, sizeof(char *), cmp); /* same order every run */
        for (guint k = 0; k < names->len; k++)
            run_file(names->pdata[k]);
        g_ptr_array_free(names, TRUE);
    }
    double s = (double)(g_get_monotonic_time() - t0) / 1e6;
    printf("replay %s: %d corpus files, %lld mutated inputs, %.2f s\n", FUZZ_TARGET_NAME,
           n_files, n_mutated, s);
    if (n_files == 0) {
        fprintf(stderr, "replay: no input files\n");
        return 1;
    }
    return 0;
}
