/* Runs `unclip parity` on the goldens and compares its files with the golden ones.
 *
 *   parity-compare UNCLIP_EXE FILE...      (golden root from $UNCLIP_GOLDENS)
 *
 * For each FILE (e.g. text_encoder.safetensors): every tensor manifest.json lists for it must
 * be in our file, either copied as an input ("parity.inputs" metadata) or computed
 * ("parity.outputs"); computed tensors must have the golden shape and meet the README
 * tolerances by dtype: integers exact, 8-bit image intermediates within 1 level, floats
 * relative L2 <= 1e-4 (the per-file table below may tighten it). */
#include "core/alloc.h"
#include "io/safetensors.h"
#include "testutil.h"

#include <glib.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *file;
    double rel_l2;
} TOLS[] = {
    {"scheduler.safetensors", 1e-5},
};

static double
tol_for(const char *file)
{
    for (size_t i = 0; i < sizeof TOLS / sizeof TOLS[0]; i++)
        if (!strcmp(TOLS[i].file, file))
            return TOLS[i].rel_l2;
    return 1e-4;
}

static bool
in_list(const char *list, const char *name)
{
    if (!list)
        return false;
    gchar **v = g_strsplit(list, ",", -1);
    bool found = false;
    for (int i = 0; v[i] && !found; i++)
        found = !strcmp(v[i], name);
    g_strfreev(v);
    return found;
}

static void
compare_file(const char *file, JsonObject *tensors, const char *golden_path,
             const char *our_path)
{
    struct unclip_err err = {0};
    struct unclip_st_file *g = NULL, *o = NULL;
    TU_CHECK(unclip__st_open(golden_path, &g, &err) == UNCLIP_OK, "%s", err.msg);
    TU_CHECK(unclip__st_open(our_path, &o, &err) == UNCLIP_OK, "%s", err.msg);
    if (!g || !o) {
        unclip__st_close(g);
        unclip__st_close(o);
        return;
    }
    const char *inputs = unclip__st_metadata(o, "parity.inputs");
    const char *outputs = unclip__st_metadata(o, "parity.outputs");
    double tol = tol_for(file);
    int n_cmp = 0, n_in = 0;
    double worst = 0.0;
    GList *names = json_object_get_members(tensors);
    for (GList *l = names; l; l = l->next) {
        const char *name = l->data;
        const struct unclip_st_tensor *gt = unclip__st_find(g, name);
        const struct unclip_st_tensor *ot = unclip__st_find(o, name);
        bool is_in = in_list(inputs, name), is_out = in_list(outputs, name);
        TU_CHECK(gt != NULL, "%s: golden file lacks %s", file, name);
        TU_CHECK(ot && (is_in || is_out), "%s: %s was not produced", file, name);
        if (!gt || !ot)
            continue;
        bool same_shape = gt->ndim == ot->ndim;
        for (int32_t k = 0; same_shape && k < gt->ndim; k++)
            same_shape = gt->shape[k] == ot->shape[k];
        char a[96], b[96];
        TU_CHECK(same_shape && gt->dtype == ot->dtype, "%s: %s is %s %s, golden %s %s", file,
                 name, unclip__dtype_name(ot->dtype),
                 unclip__st_shape_str(ot->ndim, ot->shape, a, sizeof a),
                 unclip__dtype_name(gt->dtype),
                 unclip__st_shape_str(gt->ndim, gt->shape, b, sizeof b));
        if (!same_shape)
            continue;
        if (is_in) {
            TU_CHECK(gt->nbytes == ot->nbytes && !memcmp(gt->data, ot->data, gt->nbytes),
                     "%s: input %s differs from the golden", file, name);
            n_in++;
            continue;
        }
        n_cmp++;
        if (gt->dtype == UNCLIP_DT_I64 || gt->dtype == UNCLIP_DT_I32 ||
            gt->dtype == UNCLIP_DT_BOOL) {
            int64_t *x = g_new0(int64_t, gt->numel + 1), *y = g_new0(int64_t, gt->numel + 1);
            unclip__st_to_i64(ot, x, NULL);
            unclip__st_to_i64(gt, y, NULL);
            int64_t first = -1, n_diff = 0;
            for (int64_t i = 0; i < gt->numel; i++)
                if (x[i] != y[i]) {
                    n_diff++;
                    if (first < 0)
                        first = i;
                }
            TU_CHECK(n_diff == 0, "%s: %s: %lld of %lld values differ (first at %lld: %lld vs "
                     "%lld)", file, name, (long long)n_diff, (long long)gt->numel,
                     (long long)first, first >= 0 ? (long long)x[first] : 0LL,
                     first >= 0 ? (long long)y[first] : 0LL);
            g_free(x);
            g_free(y);
        } else if (gt->dtype == UNCLIP_DT_U8) {
            const uint8_t *x = ot->data, *y = gt->data;
            int maxd = 0;
            for (int64_t i = 0; i < gt->numel; i++)
                maxd = MAX(maxd, abs((int)x[i] - (int)y[i]));
            TU_CHECK(maxd <= 1, "%s: %s: max difference %d levels > 1", file, name, maxd);
        } else {
            float *x = g_new0(float, gt->numel + 1), *y = g_new0(float, gt->numel + 1);
            unclip__st_to_f32(ot, x, NULL);
            unclip__st_to_f32(gt, y, NULL);
            double e = tu_rel_l2(x, y, gt->numel);
            worst = MAX(worst, e);
            TU_CHECK(e <= tol && tu_first_nonfinite(x, gt->numel) < 0,
                     "%s: %s: relative L2 %.3e > %.0e", file, name, e, tol);
            g_free(x);
            g_free(y);
        }
    }
    printf("%-28s %d tensors compared, %d inputs checked, worst float rel L2 %.2e\n", file,
           n_cmp, n_in, worst);
    g_list_free(names);
    unclip__st_close(g);
    unclip__st_close(o);
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: parity-compare UNCLIP_EXE FILE...\n");
        return 2;
    }
    char root[4096];
    snprintf(root, sizeof root, "%s", tu_golden_path(""));
    size_t rl = strlen(root);
    if (rl > 1 && root[rl - 1] == '/')
        root[rl - 1] = '\0';

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/unclip-parity-XXXXXX", g_get_tmp_dir());
    if (!g_mkdtemp(tmp)) {
        printf("cannot create a temporary folder\n");
        return 1;
    }
    /* Run the harness on exactly the files asked for. */
    GPtrArray *av = g_ptr_array_new();
    g_ptr_array_add(av, argv[1]);
    g_ptr_array_add(av, "parity");
    for (int i = 2; i < argc; i++) {
        g_ptr_array_add(av, "--only");
        g_ptr_array_add(av, argv[i]);
    }
    g_ptr_array_add(av, root);
    g_ptr_array_add(av, tmp);
    g_ptr_array_add(av, NULL);
    gchar *out = NULL, *errout = NULL;
    gint status = 0;
    GError *ge = NULL;
    bool ran = g_spawn_sync(NULL, (gchar **)av->pdata, NULL, 0, NULL, NULL, &out, &errout,
                            &status, &ge);
    printf("%s%s", out ? out : "", errout ? errout : "");
    TU_CHECK(ran && g_spawn_check_wait_status(status, NULL), "unclip parity failed: %s",
             ge ? ge->message : "non-zero exit");
    g_clear_error(&ge);
    g_free(out);
    g_free(errout);
    g_ptr_array_free(av, TRUE);

    char *mpath = g_build_filename(root, "goldens", "manifest.json", NULL);
    JsonParser *p = json_parser_new();
    if (!json_parser_load_from_file(p, mpath, NULL)) {
        printf("cannot read %s\n", mpath);
        return 1;
    }
    JsonObject *mg = json_object_get_object_member(json_node_get_object(json_parser_get_root(p)),
                                                   "module_goldens");
    for (int i = 2; i < argc; i++) {
        JsonObject *entry = mg && json_object_has_member(mg, argv[i])
                                ? json_object_get_object_member(mg, argv[i])
                                : NULL;
        TU_CHECK(entry && json_object_has_member(entry, "tensors"),
                 "manifest lists no tensors for %s", argv[i]);
        if (!entry)
            continue;
        char *gpath = g_build_filename(root, "goldens", argv[i], NULL);
        char *opath = g_build_filename(tmp, argv[i], NULL);
        compare_file(argv[i], json_object_get_object_member(entry, "tensors"), gpath, opath);
        g_free(gpath);
        g_free(opath);
    }
    g_object_unref(p);
    g_free(mpath);
    gchar *rm[] = {"rm", "-rf", tmp, NULL};
    g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    return tu_summary("parity-compare");
}
