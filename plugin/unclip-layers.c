/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-layers.c: drawables -> engine images; results -> layers in one undo group.
 */

#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gi18n-lib.h>

#include "unclip-errors.h"
#include "unclip-layers.h"


gboolean
unclip_layers_read_source (GimpDrawable         *drawable,
                           struct unclip_image  *out,
                           GeglRectangle        *area,
                           GError              **error)
{
  GeglBuffer *buffer;
  gint        x, y, w, h;
  gint        off_x = 0, off_y = 0;

  memset (out, 0, sizeof *out);

  if (! drawable || ! gimp_item_is_valid (GIMP_ITEM (drawable)))
    {
      g_set_error_literal (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_FAILED,
                           _("The source layer no longer exists."));
      return FALSE;
    }

  /* The selection's bounding box within the drawable; the whole drawable when there is no
   * selection. FALSE means the selection misses the drawable entirely. */
  if (! gimp_drawable_mask_intersect (drawable, &x, &y, &w, &h) || w <= 0 || h <= 0)
    {
      g_set_error (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_FAILED,
                   _("The selection does not touch the layer “%s”: select part of it, "
                     "or nothing."),
                   gimp_item_get_name (GIMP_ITEM (drawable)));
      return FALSE;
    }

  out->width    = w;
  out->height   = h;
  out->channels = 3;
  out->stride   = w * 3;
  out->pixels   = g_try_malloc ((gsize) out->stride * (gsize) h);
  if (! out->pixels)
    {
      memset (out, 0, sizeof *out);
      g_set_error (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_MEMORY,
                   _("Out of memory reading the layer (%d × %d pixels)."), w, h);
      return FALSE;
    }

  /* Alpha is dropped (not composited), as the CLIP preprocessing does with an RGBA file. */
  buffer = gimp_drawable_get_buffer (drawable);
  gegl_buffer_get (buffer, GEGL_RECTANGLE (x, y, w, h), 1.0, babl_format ("R'G'B' u8"),
                   out->pixels, out->stride, GEGL_ABYSS_NONE);
  g_object_unref (buffer);

  if (area)
    {
      gimp_drawable_get_offsets (drawable, &off_x, &off_y);
      *area = *GEGL_RECTANGLE (x + off_x, y + off_y, w, h);
    }

  return TRUE;
}

static const Babl *
image_format (const struct unclip_image *image)
{
  switch (image->channels)
    {
    case 1:  return babl_format ("Y' u8");
    case 4:  return babl_format ("R'G'B'A u8");
    default: return babl_format ("R'G'B' u8");
    }
}

static GimpImageType
layer_type_for (GimpImage *image)
{
  switch (gimp_image_get_base_type (image))
    {
    case GIMP_GRAY:    return GIMP_GRAY_IMAGE;
    case GIMP_INDEXED: return GIMP_INDEXED_IMAGE;
    default:           return GIMP_RGB_IMAGE;
    }
}

/* The rectangle the results are centred in or scaled to. */
static GeglRectangle
target_area (GimpImage           *image,
             const GeglRectangle *source_area,
             UnclipPlacement      placement)
{
  GeglRectangle whole = { 0, 0, gimp_image_get_width (image), gimp_image_get_height (image) };
  gboolean      non_empty = FALSE;
  gint          x1, y1, x2, y2;

  if (placement == UNCLIP_PLACE_IMAGE)
    return whole;

  if (gimp_selection_bounds (image, &non_empty, &x1, &y1, &x2, &y2) && non_empty)
    return *GEGL_RECTANGLE (x1, y1, x2 - x1, y2 - y1);

  if (source_area)
    return *source_area;

  return whole;
}

static gboolean
add_one (GimpImage           *image,
         GimpItem            *parent,
         gint                 position,
         const GeglRectangle *target,
         UnclipPlacement      placement,
         const UnclipResult  *result,
         GimpLayer          **layer_out,
         GError             **error)
{
  const struct unclip_image *img = result->image;
  GimpLayer                 *layer;
  GeglBuffer                *buffer;
  GimpParasite              *parasite;
  gint                       w = img->width;
  gint                       h = img->height;

  layer = gimp_layer_new (image, result->name, w, h, layer_type_for (image), 100.0,
                          gimp_image_get_default_new_layer_mode (image));
  if (! layer)
    goto fail;

  /* Attached before the layer joins the image: then it is no undo step of its own (it comes
   * and goes with the layer), and GIMP 3.0's redo of an undoable item parasite would end an
   * undo group that is not open. */
  parasite = gimp_parasite_new (UNCLIP_PARASITE, GIMP_PARASITE_PERSISTENT,
                                (guint32) strlen (result->parasite) + 1, result->parasite);
  if (! gimp_item_attach_parasite (GIMP_ITEM (layer), parasite))
    {
      gimp_parasite_free (parasite);
      gimp_item_delete (GIMP_ITEM (layer));
      goto fail;
    }
  gimp_parasite_free (parasite);

  if (! gimp_image_insert_layer (image, layer, GIMP_LAYER (parent), position))
    {
      gimp_item_delete (GIMP_ITEM (layer));
      goto fail;
    }
  *layer_out = layer;

  buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (layer));
  gegl_buffer_set (buffer, GEGL_RECTANGLE (0, 0, w, h), 0, image_format (img),
                   img->pixels, img->stride);
  gegl_buffer_flush (buffer);
  g_object_unref (buffer);
  gimp_drawable_update (GIMP_DRAWABLE (layer), 0, 0, w, h);

  if (placement != UNCLIP_PLACE_NATIVE)
    {
      /* Fit inside the target, keeping the aspect ratio. */
      gdouble scale = MIN ((gdouble) target->width / w, (gdouble) target->height / h);

      w = MAX (1, (gint) lround (w * scale));
      h = MAX (1, (gint) lround (h * scale));
      if (! gimp_layer_scale (layer, w, h, FALSE))
        goto fail;
    }

  if (! gimp_layer_set_offsets (layer,
                                target->x + (target->width - w) / 2,
                                target->y + (target->height - h) / 2))
    goto fail;

  return TRUE;

fail:
  g_set_error (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_FAILED,
               _("GIMP could not add the layer “%s”: %s"), result->name,
               gimp_pdb_get_last_error (gimp_get_pdb ()));
  return FALSE;
}

GimpImage *
unclip_layers_write (GimpImage            *image,
                     GimpLayer            *anchor,
                     const GeglRectangle  *source_area,
                     UnclipPlacement       placement,
                     const UnclipResult   *results,
                     gint                  n,
                     GimpLayer          ***layers_out,
                     GError              **error)
{
  GimpLayer     **layers;
  GimpItem       *parent   = NULL;
  gint            position = 0;
  gboolean        new_image = FALSE;
  gboolean        ok = TRUE;
  GeglRectangle   target;
  gint            i;

  g_return_val_if_fail (n > 0, NULL);

  if (! image)
    {
      image = gimp_image_new (results[0].image->width, results[0].image->height, GIMP_RGB);
      if (! image)
        {
          g_set_error (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_FAILED,
                       _("GIMP could not make a new image: %s"),
                       gimp_pdb_get_last_error (gimp_get_pdb ()));
          return NULL;
        }
      new_image = TRUE;
      anchor    = NULL;
      gimp_image_undo_disable (image);
    }

  if (anchor && gimp_item_is_valid (GIMP_ITEM (anchor)) &&
      gimp_item_get_image (GIMP_ITEM (anchor)) == image)
    {
      parent   = gimp_item_get_parent (GIMP_ITEM (anchor));
      position = gimp_image_get_item_position (image, GIMP_ITEM (anchor));
    }

  target = target_area (image, source_area, placement);
  layers = g_new0 (GimpLayer *, n + 1);

  if (! new_image)
    gimp_image_undo_group_start (image);

  /* Inserting each at the same position, last first, leaves results[0] on top. */
  for (i = n - 1; i >= 0 && ok; i--)
    ok = add_one (image, parent, position, &target, placement, &results[i], &layers[i],
                  error);

  if (! ok)
    {
      /* Leave the image as it was: take out what was added (inside the same group). */
      for (i = 0; i < n; i++)
        if (layers[i] && gimp_item_is_valid (GIMP_ITEM (layers[i])))
          gimp_image_remove_layer (image, layers[i]);
    }

  if (! new_image)
    gimp_image_undo_group_end (image);

  if (new_image)
    {
      if (! ok)
        {
          gimp_image_delete (image);
          g_free (layers);
          return NULL;
        }
      gimp_image_undo_enable (image);
      gimp_image_clean_all (image);
    }

  if (! ok)
    {
      g_free (layers);
      return NULL;
    }

  if (layers_out)
    *layers_out = layers;
  else
    g_free (layers);

  return image;
}
