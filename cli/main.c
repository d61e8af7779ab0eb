/* unclip: the engine from the shell. Each subcommand lives in its own cli/cmd-*.c file and is
 * listed in the table below. */
#include "cli.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

static const struct cli_command commands[] = {
    {"devices", "list Vulkan devices and the features the engine uses", cli_cmd_devices},
    {"generate", "text to image: unclip generate --model DIR --seed N -o out.png PROMPT",
     cli_cmd_generate},
    {"variations", "image variations: unclip variations --model DIR --seed N -n K -o out.png "
                   "IMAGE", cli_cmd_variations},
    {"interpolate", "frames between two ends: unclip interpolate --model DIR --from A --to B "
                    "--frames N|--at P,P... -o frame.png", cli_cmd_interpolate},
    {"text-diff", "text diffs: unclip text-diff --model DIR --from TEXT --to TEXT --amount A "
                  "-o out.png IMAGE", cli_cmd_text_diff},
    {"embed-text", "CLIP text embeddings: unclip embed-text --model DIR -o out.safetensors "
                   "PROMPT...", cli_cmd_embed_text},
    {"embed-image", "CLIP image embeddings: unclip embed-image --model DIR -o out.safetensors "
                    "IMAGE.png...", cli_cmd_embed_image},
    {"parity", "run the engine on the golden inputs: unclip parity GOLDEN_ROOT OUT_DIR",
     cli_cmd_parity},
    {"download", "fetch a model from the Hugging Face hub: unclip download karlo [--dest DIR]",
     cli_cmd_download},
    {"find-model", "print the model folder a name or path resolves to, or where it looked",
     cli_cmd_find_model},
    {"convert", "fp16 copy of a model folder: unclip convert --fp16 SRC DST", cli_cmd_convert},
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: unclip COMMAND [OPTIONS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'unclip COMMAND --help' describes a command's options.\n");
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("unclip %s\n", unclip_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            /* GOptionContext's --help names the program by this ("Usage: unclip generate
             * [OPTION...] PROMPT"); GLib leaves it unset for the subcommand's argv. */
            char prg[64];
            snprintf(prg, sizeof prg, "unclip %s", commands[i].name);
            g_set_prgname(prg);
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "unclip: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
