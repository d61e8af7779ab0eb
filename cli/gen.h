/* Shared parts of the picture-making commands (generate, variations, interpolate, text-diff):
 * common options, opening the model, sources given on the command line, progress display,
 * Ctrl-C as cancel, output file names and the statistics table. Implemented in
 * cmd-generate.c. */
#ifndef UNCLIP_CLI_GEN_H
#define UNCLIP_CLI_GEN_H

#include "unclip/unclip.h"

#include <glib.h>
#include <stdbool.h>

/* Options every picture command takes (GOptionEntry targets). */
struct gen_opts {
    const char *cmd;     /* "generate", ... (for messages)                  */
    gchar *model, *output, *dump, *device;
    gchar *seed;         /* decimal; NULL: a random seed (printed)          */
    gint count;          /* -n (generate, variations)                       */
    gint prior_steps, decoder_steps, sr_steps;
    gdouble prior_guidance, decoder_guidance;
    gboolean fp32, quiet, stats;
    gboolean decoder_only; /* --decoder-only: stop after the decoder (its own small pictures) */
};

/* Fills defaults (the pipeline's). */
void gen_opts_init(struct gen_opts *o, const char *cmd);
/* Adds the common entries to a GOptionContext's main group. with_count: -n; with_prior:
 * --prior-steps / --prior-guidance. */
void gen_add_entries(GOptionContext *oc, struct gen_opts *o, bool with_count, bool with_prior);
/* Parses argv with oc (exits nothing: returns 0, or 2 with a message for a usage error, or
 * -1 when --help was printed). Requires --model and -o. */
int gen_parse(GOptionContext *oc, struct gen_opts *o, int *argc, char ***argv);
void gen_opts_clear(struct gen_opts *o);

/* Context + model (1 on failure, message printed). */
int gen_open(const struct gen_opts *o, struct unclip_ctx **ctx, struct unclip_model **model);
/* Run parameters from the options, with progress and Ctrl-C wired (gen_run_begin/end). */
struct unclip_run_params gen_params(struct gen_opts *o);
void gen_run_begin(struct gen_opts *o);
/* After the run: ends the progress line; returns the exit code for st (1 on failure, message
 * printed with ctx's error). */
int gen_run_end(struct gen_opts *o, struct unclip_ctx *ctx, unclip_status st);

/* A picture source given on the command line:
 *   "text:PROMPT"          a prompt (the prior makes its image embedding)
 *   "embedding:FILE"       an image embedding from a safetensors file (the single float
 *                          tensor whose name ends in "image_embeds" or "image_embeddings",
 *                          shape [E] or [1, E], e.g. what `unclip embed-image` writes)
 *   anything else          a PNG file
 * Storage the source points into is kept in *store (free with gen_source_clear). Returns
 * false with a message printed. */
struct gen_source_store {
    struct unclip_image image;
    float *embedding;
};
bool gen_source(const struct gen_opts *o, const char *arg, struct unclip_source *src,
                struct gen_source_store *store);
void gen_source_clear(struct gen_source_store *store);

/* Writes the pictures: one picture goes to the output name as given; several go to names
 * made from it: a printf pattern with one integer conversion ("frame-%03d.png") gets the
 * index 0, 1, ...; otherwise picture 0 gets the name itself and picture k "-k" before the
 * extension (out.png, out-1.png, out-2.png). Prints what was written unless quiet. Returns the
 * exit code. */
int gen_write(const struct gen_opts *o, const struct unclip_result *res);

/* Per-stage times and memory (stdout). */
void gen_print_stats(const struct unclip_run_stats *s);

#endif
