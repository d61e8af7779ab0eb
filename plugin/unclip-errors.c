/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-errors.c: engine status -> GError, once, at the plug-in's edge.
 */

#include "config.h"

#include <string.h>

#include <glib/gi18n-lib.h>

#include "unclip-errors.h"


G_DEFINE_QUARK (unclip-plug-error-quark, unclip_plug_error)


/* The component folders behind each feature bit, as include/unclip/unclip.h describes them
 * (diffusers' layout names). Used only to tell the user what a folder lacks. */
static const struct
{
  guint32      feature;
  const gchar *components[11];
} feature_parts[] =
{
  { UNCLIP_FEATURE_TEXT_TO_IMAGE,
    { "tokenizer", "text_encoder", "prior", "prior_scheduler", "text_proj", "decoder",
      "decoder_scheduler", "super_res_first", "super_res_last", "super_res_scheduler",
      NULL } },
  { UNCLIP_FEATURE_DECODE,
    { "text_proj", "decoder", "decoder_scheduler", "super_res_first", "super_res_last",
      "super_res_scheduler", NULL } },
  { UNCLIP_FEATURE_IMAGE_EMBED,
    { "image_encoder", "feature_extractor", NULL } },
  { UNCLIP_FEATURE_TEXT_EMBED,
    { "tokenizer", "text_encoder", NULL } },
};

gchar *
unclip_missing_components (const gchar *model_dir,
                           guint32      needs)
{
  GString *missing = g_string_new (NULL);
  gsize    i;
  gint     j;

  for (i = 0; i < G_N_ELEMENTS (feature_parts); i++)
    {
      if (! (needs & feature_parts[i].feature))
        continue;

      for (j = 0; feature_parts[i].components[j]; j++)
        {
          const gchar *name = feature_parts[i].components[j];
          gchar       *path = g_build_filename (model_dir, name, NULL);
          gchar       *item = g_strconcat (name, "/", NULL);

          if (! g_file_test (path, G_FILE_TEST_IS_DIR) &&
              ! strstr (missing->str, item))
            {
              if (missing->len)
                g_string_append (missing, ", ");
              g_string_append (missing, item);
            }
          g_free (item);
          g_free (path);
        }
    }

  if (! missing->len)
    {
      g_string_free (missing, TRUE);
      return NULL;
    }

  return g_string_free (missing, FALSE);
}

gchar *
unclip_features_describe (guint32 features)
{
  GPtrArray *parts = g_ptr_array_new ();
  gchar     *text;

  if ((features & UNCLIP_FEATURE_TEXT_TO_IMAGE))
    g_ptr_array_add (parts, _("text to image"));
  if ((features & UNCLIP_FEATURE_IMAGE_EMBED) && (features & UNCLIP_FEATURE_DECODE))
    g_ptr_array_add (parts, _("variations"));
  if ((features & UNCLIP_FEATURE_DECODE) &&
      (features & (UNCLIP_FEATURE_IMAGE_EMBED | UNCLIP_FEATURE_TEXT_TO_IMAGE)))
    g_ptr_array_add (parts, _("interpolation"));
  if ((features & UNCLIP_FEATURE_IMAGE_EMBED) && (features & UNCLIP_FEATURE_TEXT_EMBED) &&
      (features & UNCLIP_FEATURE_DECODE))
    g_ptr_array_add (parts, _("text diffs"));
  g_ptr_array_add (parts, NULL);

  /* TRANSLATORS: separator of a list such as "text to image, variations" */
  text = g_strjoinv (_(", "), (gchar **) parts->pdata);
  g_ptr_array_free (parts, TRUE);

  return text;
}

static const gchar *
nonempty (const gchar *detail)
{
  return (detail && *detail) ? detail : _("no details");
}

GError *
unclip_error_from_job (const UnclipJob *job)
{
  const gchar *detail = nonempty (job->detail);
  const gchar *dir    = job->model_dir ? job->model_dir : "";

  switch (job->status)
    {
    case UNCLIP_OK:
      return NULL;

    case UNCLIP_E_CANCELLED:
      return g_error_new_literal (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_CANCELLED,
                                  _("Stopped: the image was not changed."));

    case UNCLIP_E_ARG:
      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_ARGUMENT,
                          _("The engine refused a setting (%s). "
                            "Reset the dialog to its default values and try again."),
                          detail);

    case UNCLIP_E_PROMPT:
      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_PROMPT,
                          _("The prompt cannot be used (%s). Change the prompt and try again."),
                          detail);

    case UNCLIP_E_MODEL:
      if (! dir[0])
        return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_MODEL,
                            _("No model was found (%s). Choose the folder of an unCLIP "
                              "model (it holds model_index.json), or get one with "
                              "“unclip download karlo”."),
                            detail);

      if (job->needs && (job->features & job->needs) != job->needs &&
          (! job->detail || ! job->detail[0]))
        {
          gchar  *missing = unclip_missing_components (dir, job->needs & ~job->features);
          gchar  *can     = unclip_features_describe (job->features);
          GError *error;

          error = g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_MODEL,
                               _("The model folder “%s” cannot be used here: it lacks %s "
                                 "(it can do: %s). Choose a complete model folder, such as "
                                 "the default model."),
                               dir, missing ? missing : _("a needed component"),
                               can[0] ? can : _("nothing"));
          g_free (missing);
          g_free (can);
          return error;
        }

      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_MODEL,
                          _("The model folder “%s” is incomplete or inconsistent: %s. "
                            "Choose another model folder, or copy the model again."),
                          dir, detail);

    case UNCLIP_E_IO:
      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_MODEL,
                          _("A file of the model folder “%s” could not be read: %s. "
                            "Check that the folder is complete and readable."),
                          dir, detail);

    case UNCLIP_E_FORMAT:
      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_MODEL,
                          _("A file of the model folder “%s” is damaged or in the wrong "
                            "format: %s. Copy or download the model again."),
                          dir, detail);

    case UNCLIP_E_UNSUPPORTED:
      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_DEVICE,
                          _("The device cannot run the engine: %s. Choose another device, "
                            "or update the graphics driver."),
                          detail);

    case UNCLIP_E_NO_DEVICE:
      if (job->device && job->device[0])
        return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_DEVICE,
                            _("No usable device matches “%s” (%s). Choose Automatic or a "
                              "device from the list."),
                            job->device, detail);
      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_DEVICE,
                          _("No usable Vulkan device was found (%s). Install a Vulkan "
                            "driver: Mesa's lavapipe runs on any processor."),
                          detail);

    case UNCLIP_E_VULKAN:
    case UNCLIP_E_DEVICE_LOST:
    case UNCLIP_E_TIMEOUT:
      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_DEVICE,
                          _("The graphics device failed (%s). Try again with fewer images "
                            "or fewer steps, or choose another device."),
                          detail);

    case UNCLIP_E_NOMEM:
      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_MEMORY,
                          _("Out of memory (%s). Make fewer images at once, or close other "
                            "images and programs."),
                          detail);

    case UNCLIP_E_DEVICE_NOMEM:
      return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_MEMORY,
                          _("The device ran out of memory (%s). Make fewer images at once, "
                            "or choose a device with more memory."),
                          detail);

    case UNCLIP_E_INTERNAL:
    default:
      break;
    }

  return g_error_new (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_INTERNAL,
                      _("Internal error in the engine (%s: %s). Please report it."),
                      unclip_status_str (job->status), detail);
}
