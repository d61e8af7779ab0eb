/* Fuzz target: the safetensors reader (unclip__st_open_memory) on any bytes.
 * When a file is accepted, every promise of io/safetensors.h is checked: tensors tile the data
 * buffer inside the input, nbytes = numel x dtype size, names are found again, metadata
 * entries are readable, and the converters read every element (ASan sees any overrun). */
#include "fuzz.h"
#include "io/safetensors.h"

#include <string.h>

/* Converting elements costs time per byte; the fuzzer's inputs are small anyway. */
#define MAX_CONVERT (1u << 20)

static unclip_status
one(const uint8_t *data, size_t size)
{
    struct unclip_err err = {0};
    struct unclip_st_file *f = NULL;
    unclip_status st = unclip__st_open_memory(data, size, "fuzz.safetensors", &f, &err);
    if (st != UNCLIP_OK) {
        fz_check_failure(st, &err, "st_open_memory");
        FZ_ASSERT(f == NULL, "a failed open returned a file");
        return st;
    }
    FZ_ASSERT(f != NULL && size >= 8, "accepted %zu bytes", size);
    uint64_t hlen = 0;
    memcpy(&hlen, data, 8); /* little-endian hosts only, like the reader */
    const uint8_t *buf = data + 8 + hlen, *end = data + size;
    int32_t n = unclip__st_count(f);
    FZ_ASSERT(n >= 0, "count %d", (int)n);
    uint64_t expect_offset = 0;
    for (int32_t i = 0; i < n; i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        FZ_ASSERT(t && t->name, "tensor %d missing", (int)i);
        FZ_ASSERT(unclip__st_find(f, t->name) == t, "'%s' not found by name", t->name);
        FZ_ASSERT(t->ndim >= 0 && t->ndim <= UNCLIP_ST_MAX_DIMS, "ndim %d", (int)t->ndim);
        FZ_ASSERT(unclip__dtype_size(t->dtype) > 0, "dtype %d", (int)t->dtype);
        int64_t numel = 1;
        bool zero = false;
        for (int32_t d = 0; d < t->ndim; d++) {
            FZ_ASSERT(t->shape[d] >= 0, "negative dimension");
            zero = zero || t->shape[d] == 0;
        }
        for (int32_t d = 0; d < t->ndim && !zero; d++)
            FZ_ASSERT(!__builtin_mul_overflow(numel, t->shape[d], &numel), "'%s': shape "
                      "product overflows", t->name);
        if (zero)
            numel = 0;
        FZ_ASSERT(numel == t->numel, "numel %lld, shape gives %lld", (long long)t->numel,
                  (long long)numel);
        FZ_ASSERT(t->nbytes == (uint64_t)t->numel * unclip__dtype_size(t->dtype),
                  "'%s': nbytes %llu", t->name, (unsigned long long)t->nbytes);
        const uint8_t *p = t->data;
        FZ_ASSERT(p == buf + expect_offset, "'%s' does not follow the previous tensor",
                  t->name);
        FZ_ASSERT(p >= buf && p <= end && t->nbytes <= (uint64_t)(end - p),
                  "'%s' points outside the input", t->name);
        FZ_ASSERT(t->file_offset == (uint64_t)(p - data), "'%s': file_offset", t->name);
        expect_offset += t->nbytes;
        char shape[256];
        unclip__st_shape_str(t->ndim, t->shape, shape, sizeof shape);
        if (t->nbytes <= MAX_CONVERT && t->numel > 0) {
            float *fv = unclip__calloc((size_t)t->numel, sizeof *fv);
            int64_t *iv = unclip__calloc((size_t)t->numel, sizeof *iv);
            if (fv) {
                struct unclip_err e2 = {0};
                FZ_ASSERT(unclip__st_to_f32(t, fv, &e2) == UNCLIP_OK, "to_f32: %s", e2.msg);
            }
            if (iv) {
                struct unclip_err e2 = {0};
                unclip_status s2 = unclip__st_to_i64(t, iv, &e2);
                bool is_int = t->dtype == UNCLIP_DT_I64 || t->dtype == UNCLIP_DT_I32 ||
                              t->dtype == UNCLIP_DT_U8 || t->dtype == UNCLIP_DT_BOOL;
                FZ_ASSERT((s2 == UNCLIP_OK) == is_int, "to_i64 on dtype %d: %d", (int)t->dtype,
                          (int)s2);
                if (s2 != UNCLIP_OK)
                    fz_check_failure(s2, &e2, "st_to_i64");
            }
            unclip__free(fv);
            unclip__free(iv);
        }
    }
    FZ_ASSERT(buf + expect_offset == end, "tensors do not tile the data buffer");
    int32_t nm = unclip__st_metadata_count(f);
    for (int32_t i = 0; i < nm; i++) {
        const char *k = NULL, *v = NULL;
        FZ_ASSERT(unclip__st_metadata_at(f, i, &k, &v) && k && v, "metadata %d", (int)i);
        FZ_ASSERT(unclip__st_metadata(f, k) == v, "metadata '%s' not found by key", k);
    }
    const char *k = NULL, *v = NULL;
    FZ_ASSERT(!unclip__st_metadata_at(f, nm, &k, &v), "metadata past the count");
    unclip__st_close(f);
    return UNCLIP_OK;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_run_with_fault(one, data, size);
    return 0;
}
