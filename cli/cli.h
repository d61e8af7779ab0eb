/* Subcommands of the unclip CLI. Each gets argv starting at its own name and returns the
 * process exit code: 0 success, 1 failure (message on stderr), 2 usage error. */
#ifndef UNCLIP_CLI_H
#define UNCLIP_CLI_H

#include "unclip/unclip.h"

struct cli_command {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv);
};

int cli_cmd_devices(int argc, char **argv);
int cli_cmd_generate(int argc, char **argv);
int cli_cmd_variations(int argc, char **argv);
int cli_cmd_interpolate(int argc, char **argv);
int cli_cmd_text_diff(int argc, char **argv);
int cli_cmd_embed_text(int argc, char **argv);
int cli_cmd_embed_image(int argc, char **argv);
int cli_cmd_parity(int argc, char **argv);
int cli_cmd_download(int argc, char **argv);
int cli_cmd_find_model(int argc, char **argv);
int cli_cmd_convert(int argc, char **argv);

#endif
