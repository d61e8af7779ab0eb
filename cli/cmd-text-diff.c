/* unclip text-diff: moves a picture along a caption change (DALL-E 2 paper 3.3). */
#include "cli.h"
#include "gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "0.25,0.5" or repeated --amount values -> floats. */
static bool
parse_amounts(char **list, float **out, int32_t *n)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(float));
    for (int i = 0; list && list[i]; i++) {
        gchar **parts = g_strsplit(list[i], ",", -1);
        for (int k = 0; parts[k]; k++) {
            char *end;
            double v = g_ascii_strtod(parts[k], &end);
            if (end == parts[k] || *end != '\0' || !(v > -10.0 && v < 10.0)) {
                fprintf(stderr, "unclip text-diff: --amount wants numbers such as 0.25, not "
                                "'%s'\n", parts[k]);
                g_strfreev(parts);
                g_array_free(a, TRUE);
                return false;
            }
            float f = (float)v;
            g_array_append_val(a, f);
        }
        g_strfreev(parts);
    }
    *n = (int32_t)a->len;
    *out = (float *)g_array_free(a, FALSE);
    return true;
}

int
cli_cmd_text_diff(int argc, char **argv)
{
    struct gen_opts o;
    gen_opts_init(&o, "text-diff");
    gchar *from = NULL, *to = NULL;
    gchar **amount_args = NULL;
    GOptionEntry own[] = {
        {"from", 0, 0, G_OPTION_ARG_STRING, &from,
         "caption describing the picture as it is, e.g. \"a photo of a cat\"", "TEXT"},
        {"to", 0, 0, G_OPTION_ARG_STRING, &to,
         "caption of the change, e.g. \"an anime drawing of a cat\"", "TEXT"},
        {"amount", 0, 0, G_OPTION_ARG_STRING_ARRAY, &amount_args,
         "how far to move, 0 (the picture's own decoding) .. 1; typically 0.25-0.5; repeat "
         "it or give a list (0,0.2,0.4) for several pictures (default 0.5)", "A"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *oc = g_option_context_new("IMAGE - text diff");
    g_option_context_set_summary(
        oc, "Moves IMAGE's CLIP image embedding towards normalize(text(TO) - text(FROM)) on the\n"
            "sphere by each amount (its norm kept) and decodes every result with the same\n"
            "noise. IMAGE is a PNG file, 'embedding:FILE.safetensors' or 'text:PROMPT' (then\n"
            "the prior makes the embedding and the prompt stays the decoder's text).");
    g_option_context_set_description(
        oc, "Several amounts are written to out.png, out-1.png, ... or, when -o holds a %d\n"
            "conversion such as 'diff-%d.png', to diff-0.png, diff-1.png, ...\n");
    g_option_context_add_main_entries(oc, own, NULL);
    gen_add_entries(oc, &o, false, true);
    int rc = gen_parse(oc, &o, &argc, &argv);
    float *amounts = NULL;
    int32_t n_amounts = 0;
    if (rc == 0 && (!from || !to)) {
        fprintf(stderr, "unclip text-diff: --from and --to captions are required\n");
        rc = 2;
    }
    if (rc == 0 && argc != 2) {
        fprintf(stderr, "unclip text-diff: give exactly one IMAGE; see 'unclip text-diff "
                        "--help'\n");
        rc = 2;
    }
    if (rc == 0) {
        char *def[] = {"0.5", NULL};
        if (!parse_amounts(amount_args ? amount_args : def, &amounts, &n_amounts))
            rc = 2;
        else if (n_amounts < 1 || n_amounts > 1000) {
            fprintf(stderr, "unclip text-diff: 1..1000 amounts are allowed\n");
            rc = 2;
        }
    }
    struct unclip_source src;
    struct gen_source_store store = {0};
    if (rc == 0 && !gen_source(&o, argv[1], &src, &store))
        rc = 1;
    struct unclip_ctx *ctx = NULL;
    struct unclip_model *model = NULL;
    if (rc == 0)
        rc = gen_open(&o, &ctx, &model);
    if (rc == 0) {
        struct unclip_run_params p = gen_params(&o);
        struct unclip_result res = {0};
        gen_run_begin(&o);
        unclip_status st =
            unclip_run_text_diff(model, &src, from, to, amounts, n_amounts, &p, &res);
        rc = gen_run_end(&o, ctx, st);
        if (rc == 0)
            rc = gen_write(&o, &res);
        if (rc == 0 && o.stats)
            gen_print_stats(&res.stats);
        unclip_result_clear(&res);
    }
    gen_source_clear(&store);
    unclip_model_free(model);
    unclip_ctx_free(ctx);
    g_option_context_free(oc);
    g_free(amounts);
    g_free(from);
    g_free(to);
    g_strfreev(amount_args);
    gen_opts_clear(&o);
    return rc < 0 ? 0 : rc;
}
