/* unclip interpolate: frames between two pictures or prompts (DALL-E 2 paper 3.2). */
#include "cli.h"
#include "gen.h"

#include <stdio.h>

int
cli_cmd_interpolate(int argc, char **argv)
{
    struct gen_opts o;
    gen_opts_init(&o, "interpolate");
    gchar *from = NULL, *to = NULL;
    gint frames = 5;
    GOptionEntry own[] = {
        {"from", 0, 0, G_OPTION_ARG_STRING, &from, "first end: a PNG file, 'text:PROMPT' or "
                                                   "'embedding:FILE.safetensors'", "A"},
        {"to", 0, 0, G_OPTION_ARG_STRING, &to, "last end (same forms)", "B"},
        {"frames", 0, 0, G_OPTION_ARG_INT, &frames, "number of frames, ends included "
                                                    "(default 5)", "N"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *oc = g_option_context_new("- interpolation between two pictures or prompts");
    g_option_context_set_summary(
        oc, "Decodes N frames whose CLIP image embeddings move from A to B on the sphere\n"
            "(slerp of the directions, norm interpolated linearly), all with the same noise,\n"
            "so the pictures change smoothly. Frame 0 is A's own picture for the seed ('unclip\n"
            "variations' of an image, 'unclip generate' of a prompt), frame N-1 is B's.\n"
            "A prompt end needs prior/, an image end image_encoder/: a folder with both (e.g.\n"
            "karlo-v1-alpha plus image_encoder/ and feature_extractor/ from the variations\n"
            "model) can mix them; then every frame uses the text-to-image noise stream.");
    g_option_context_set_description(
        oc, "Frames are written to frame.png, frame-1.png, ... or, when -o holds a %d\n"
            "conversion such as 'frame-%03d.png', to frame-000.png, frame-001.png, ...\n");
    g_option_context_add_main_entries(oc, own, NULL);
    gen_add_entries(oc, &o, false, true);
    int rc = gen_parse(oc, &o, &argc, &argv);
    if (rc == 0 && (!from || !to)) {
        fprintf(stderr, "unclip interpolate: --from and --to are required\n");
        rc = 2;
    }
    if (rc == 0 && (frames < 2 || frames > 1000)) {
        fprintf(stderr, "unclip interpolate: --frames must be in 2..1000\n");
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
        unclip_status st = unclip_run_interpolation(model, &a, &b, frames, &p, &res);
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
    gen_opts_clear(&o);
    return rc < 0 ? 0 : rc;
}
