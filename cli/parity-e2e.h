/* The whole-run part of `unclip parity` (cli/cmd-parity-e2e.c). */
#ifndef UNCLIP_CLI_PARITY_E2E_H
#define UNCLIP_CLI_PARITY_E2E_H

#include "unclip/unclip.h"

#include <glib.h>
#include <json-glib/json-glib.h>

/* Runs every manifest e2e entry selected by `only` (empty: all; an entry matches by its golden
 * file name "e2e_<run>.safetensors", its run name, or "e2e" for all) and writes
 * outdir/e2e_<run>.safetensors. ctx decides fp32/fp16 weights. Returns 0, or 1 after printing
 * the failures. */
int cli_parity_e2e(struct unclip_ctx *ctx, const char *root, const char *outdir,
                   JsonObject *manifest, GPtrArray *only);

#endif
