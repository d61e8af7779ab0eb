/* unclip interpolate: frames between two pictures or prompts (DALL-E 2 paper 3.2). */
#include "cli.h"
#include "gen.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_FRAMES 1000 /* the engine's limit for both forms */

/* --at values ("0.25,0.5", the option may be repeated) -> positions in [0, 1], in the order
 * given. Items may have spaces around them. Returns false with a message for an empty list,
 * an empty item, something that is not a finite number, a value outside [0, 1], or more than
 * MAX_FRAMES positions. *out: g_free. */
static bool
parse_positions(char **list, float **out, int32_t *n)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(float));
    bool ok = true, empty = false;
    for (int i = 0; ok && list && list[i]; i++) {
        if (!list[i][strspn(list[i], " \t")]) {
            empty = true; /* an empty --at: the message below */
            break;
        }
        gchar **parts = g_strsplit(list[i], ",", -1);
        for (int k = 0; ok && parts[k]; k++) {
            char *item = g_strstrip(parts[k]), *end;
            double v = g_ascii_strtod(item, &end);
            if (!*item) {
                fprintf(stderr, "unclip interpolate: --at: empty position in '%s' (give "
                                "numbers in [0, 1] separated by commas, e.g. 0,0.25,1)\n",
                        list[i]);
                ok = false;
            } else if (end == item || *end != '\0' || !isfinite(v)) {
                fprintf(stderr, "unclip interpolate: --at wants positions in [0, 1] such as "
                                "0.25, not '%s'\n", item);
                ok = false;
            } else if (!(v >= 0.0 && v <= 1.0)) {
                fprintf(stderr, "unclip interpolate: --at: position %s is outside [0, 1] (0 "
                                "is --from, 1 is --to)\n", item);
                ok = false;
            } else if (a->len >= MAX_FRAMES) {
                fprintf(stderr, "unclip interpolate: --at: at most %d positions\n", MAX_FRAMES);
                ok = false;
            } else {
                float f = (float)v;
                g_array_append_val(a, f);
            }
        }
        g_strfreev(parts);
    }
    if (ok && (empty || a->len == 0)) {
        fprintf(stderr, "unclip interpolate: --at needs at least one position in [0, 1], "
                        "e.g. --at 0.5 or --at 0,0.25,1\n");
        ok = false;
    }
    if (!ok) {
        g_array_free(a, TRUE);
        return false;
    }
    *n = (int32_t)a->len;
    *out = (float *)g_array_free(a, FALSE);
    return true;
}

int
cli_cmd_interpolate(int argc, char **argv)
{
    struct gen_opts o;
    gen_opts_init(&o, "interpolate");
    gchar *from = NULL, *to = NULL;
    gint frames = G_MININT; /* G_MININT: --frames not given */
    gchar **at_args = NULL;
    GOptionEntry own[] = {
        {"from", 0, 0, G_OPTION_ARG_STRING, &from, "first end: a PNG file, 'text:PROMPT' or "
                                                   "'embedding:FILE.safetensors'", "A"},
        {"to", 0, 0, G_OPTION_ARG_STRING, &to, "last end (same forms)", "B"},
        {"frames", 0, 0, G_OPTION_ARG_INT, &frames, "number of frames, ends included, "
                                                    "evenly spaced (default 5)", "N"},
        {"at", 0, 0, G_OPTION_ARG_STRING_ARRAY, &at_args,
         "instead of --frames: one frame at each position P in [0, 1] (0 = A, 1 = B), in the "
         "order given; comma-separated or repeated", "P[,P...]"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *oc = g_option_context_new("- interpolation between two pictures or prompts");
    g_option_context_set_summary(
        oc, "Decodes N frames whose CLIP image embeddings move from A to B on the sphere\n"
            "(slerp of the directions, norm interpolated linearly), all with the same noise,\n"
            "so the pictures change smoothly. Frame 0 is A's own picture for the seed ('unclip\n"
            "variations' of an image, 'unclip generate' of a prompt), frame N-1 is B's.\n"
            "--at 0.5,0.75 decodes only the frames at those positions, with the same noise:\n"
            "a position gives the picture --frames shows there (0.25 is frame 1 of 5).\n"
            "A prompt end needs prior/, an image end image_encoder/: a folder with both (e.g.\n"
            "karlo-v1-alpha plus image_encoder/ and feature_extractor/ from the variations\n"
            "model) can mix them; then every frame uses the text-to-image noise stream.");
    g_option_context_set_description(
        oc, "Frames are written to frame.png, frame-1.png, ... or, when -o holds a %d\n"
            "conversion such as 'frame-%03d.png', to frame-000.png, frame-001.png, ...\n"
            "(with --at, frame k is the k-th position given).\n");
    g_option_context_add_main_entries(oc, own, NULL);
    gen_add_entries(oc, &o, false, true);
    int rc = gen_parse(oc, &o, &argc, &argv);
    if (rc == 0 && (!from || !to)) {
        fprintf(stderr, "unclip interpolate: --from and --to are required\n");
        rc = 2;
    }
    float *positions = NULL;
    int32_t n_positions = 0;
    if (rc == 0 && at_args && frames != G_MININT) {
        fprintf(stderr, "unclip interpolate: give either --frames N or --at P[,P...], not "
                        "both\n");
        rc = 2;
    }
    if (rc == 0 && at_args && !parse_positions(at_args, &positions, &n_positions))
        rc = 2;
    if (rc == 0 && !at_args && frames == G_MININT)
        frames = 5;
    if (rc == 0 && !at_args && (frames < 2 || frames > MAX_FRAMES)) {
        fprintf(stderr, "unclip interpolate: --frames must be in 2..%d\n", MAX_FRAMES);
        rc = 2;
    }
    if (rc == 0 && argc != 1) {
        fprintf(stderr, "unclip interpolate: unexpected argument '%s' (the ends are --from and "
                        "--to)\n", argv[1]);
        rc = 2;
    }
    struct unclip_source a, b;
    struct gen_source_store sa = {0}, sb = {0};
    if (rc == 0 && (!gen_source(&o, from, &a, &sa) || !gen_source(&o, to, &b, &sb)))
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
            positions ? unclip_run_interpolation_at(model, &a, &b, positions, n_positions, &p,
                                                    &res)
                      : unclip_run_interpolation(model, &a, &b, frames, &p, &res);
        rc = gen_run_end(&o, ctx, st);
        if (rc == 0)
            rc = gen_write(&o, &res);
        if (rc == 0 && o.stats)
            gen_print_stats(&res.stats);
        unclip_result_clear(&res);
    }
    gen_source_clear(&sa);
    gen_source_clear(&sb);
    unclip_model_free(model);
    unclip_ctx_free(ctx);
    g_option_context_free(oc);
    g_free(from);
    g_free(to);
    g_free(positions);
    g_strfreev(at_args);
    gen_opts_clear(&o);
    return rc < 0 ? 0 : rc;
}
