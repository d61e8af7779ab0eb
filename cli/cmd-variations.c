/* unclip variations: pictures decoded from an image's CLIP embedding. */
#include "cli.h"
#include "gen.h"

#include <stdio.h>

int
cli_cmd_variations(int argc, char **argv)
{
    struct gen_opts o;
    gen_opts_init(&o, "variations");
    GOptionContext *oc = g_option_context_new("IMAGE - image variations");
    g_option_context_set_summary(
        oc, "Makes pictures from the CLIP image embedding of IMAGE as diffusers'\n"
            "UnCLIPImageVariationPipeline does (needs image_encoder/ and feature_extractor/,\n"
            "as in karlo-v1-alpha-image-variations). IMAGE is a PNG file, or\n"
            "'embedding:FILE.safetensors' for an embedding written by 'unclip embed-image'.");
    g_option_context_set_description(
        oc, "Several pictures (-n K) are written to out.png, out-1.png, ... or, when -o holds a\n"
            "%d conversion such as 'var-%02d.png', to var-00.png, var-01.png, ...\n");
    gen_add_entries(oc, &o, true, false);
    int rc = gen_parse(oc, &o, &argc, &argv);
    if (rc == 0 && argc != 2) {
        fprintf(stderr, "unclip variations: give exactly one IMAGE; see 'unclip variations "
                        "--help'\n");
        rc = 2;
    }
    struct unclip_source src;
    struct gen_source_store store = {0};
    if (rc == 0 && (!gen_source(&o, argv[1], &src, &store) ||
                    src.kind == UNCLIP_SOURCE_PROMPT)) {
        if (src.kind == UNCLIP_SOURCE_PROMPT)
            fprintf(stderr, "unclip variations: a prompt is text to image: use 'unclip "
                            "generate'\n");
        rc = src.kind == UNCLIP_SOURCE_PROMPT ? 2 : 1;
    }
    struct unclip_ctx *ctx = NULL;
    struct unclip_model *model = NULL;
    if (rc == 0)
        rc = gen_open(&o, &ctx, &model);
    if (rc == 0) {
        struct unclip_run_params p = gen_params(&o);
        struct unclip_result res = {0};
        gen_run_begin(&o);
        unclip_status st = unclip_run_variations(model, &src, &p, &res);
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
    gen_opts_clear(&o);
    return rc < 0 ? 0 : rc;
}
