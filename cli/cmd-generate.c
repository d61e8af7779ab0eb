#include "cli.h"

#include <stdio.h>

int
cli_cmd_generate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "unclip generate: not yet: the text-to-image pipeline is still being "
                    "built (see the README's status section)\n");
    return 1;
}
