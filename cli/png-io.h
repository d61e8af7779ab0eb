/* PNG files for the CLI (libpng). Named png-io.h so that <png.h> stays libpng's header.
 * The engine never sees PNG: the plug-in gets pixels from GEGL, the CLI from here.
 *
 * Reading gives 8-bit RGB (3 channels) or RGBA (4) the way Pillow decodes a file before
 * convert("RGB"): palettes are expanded (tRNS becomes alpha), grey is replicated to RGB,
 * 16-bit samples keep their high byte, and NO gamma or colour-profile conversion is applied
 * (Pillow applies none either, which is what CLIPImageProcessor saw). */
#ifndef UNCLIP_CLI_PNG_IO_H
#define UNCLIP_CLI_PNG_IO_H

#include "unclip/unclip.h"

#include <stddef.h>

/* Reads `path` into *img (img->pixels is malloc'ed and owned by the caller: free(); stride =
 * width * channels). On failure returns false with a message in err (err_size bytes) and
 * leaves *img zeroed. */
bool cli_png_read(const char *path, struct unclip_image *img, char *err, size_t err_size);

/* Writes 8-bit grey (1), grey+alpha (2), RGB (3) or RGBA (4) pixels. False + message on
 * failure (a partial file may remain). */
bool cli_png_write(const char *path, const struct unclip_image *img, char *err, size_t err_size);

#endif
