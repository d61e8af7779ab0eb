/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-layers.h: GEGL buffers <-> engine images, and writing results as layers inside one
 * undo group. Main thread only (libgimp).
 */

#ifndef __UNCLIP_LAYERS_H__
#define __UNCLIP_LAYERS_H__

#include <libgimp/gimp.h>

#include "unclip/unclip.h"

#include "unclip-params.h"

/* Reads the drawable's pixels inside the selection's bounding box (the whole drawable when
 * nothing of it is selected) as 8-bit sRGB RGB into out (pixels g_malloc'ed, owned by the
 * caller). area (optional) gets the rectangle in image coordinates. */
gboolean    unclip_layers_read_source (GimpDrawable               *drawable,
                                       struct unclip_image        *out,
                                       GeglRectangle              *area,
                                       GError                    **error);

typedef struct
{
  const struct unclip_image *image;      /* borrowed */
  gchar                     *name;       /* layer name */
  gchar                     *parasite;   /* UNCLIP_PARASITE text */
} UnclipResult;

/* Adds results[0..n) as new layers, results[0] on top, above `anchor` (in its group) when
 * given, else at the top of the stack, placed as `placement` says (`source_area`, in image
 * coordinates, is the target of UNCLIP_PLACE_NATIVE / _SELECTION when nothing is selected).
 * All changes form ONE undo group. When `image` is NULL a new image of the results' size is
 * made (without undo steps) and returned.
 *
 * On failure every layer already added is removed again, a new image is deleted, and NULL is
 * returned with `error` set. On success *layers_out (optional) gets a NULL-terminated array
 * of the new layers (g_free the array, not the layers). */
GimpImage * unclip_layers_write       (GimpImage                  *image,
                                       GimpLayer                  *anchor,
                                       const GeglRectangle        *source_area,
                                       UnclipPlacement             placement,
                                       const UnclipResult         *results,
                                       gint                        n,
                                       GimpLayer                ***layers_out,
                                       GError                    **error);

#endif /* __UNCLIP_LAYERS_H__ */
