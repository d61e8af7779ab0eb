/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-params.c: arguments, presets, names and the parameter parasite.
 */

#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gi18n-lib.h>

#include "unclip-errors.h"
#include "unclip-params.h"


/* Step counts and guidance scales of the presets. "default" is the engine's (and diffusers')
 * default; "fast" trades detail for about a third of the time. */
static const struct
{
  gint    prior_steps, decoder_steps, sr_steps;
  gdouble prior_guidance, decoder_guidance;
} presets[] =
{
  [UNCLIP_QUALITY_FAST]    = { 10, 10, 3, 4.0, 8.0 },
  [UNCLIP_QUALITY_DEFAULT] = { 25, 25, 7, 4.0, 8.0 },
};

/* Longest prompt excerpt in a layer name, in characters. */
#define NAME_PROMPT_CHARS 48


static void
add_prompt_argument (GimpProcedure *procedure,
                     const gchar   *name,
                     const gchar   *nick,
                     const gchar   *blurb)
{
  gimp_procedure_add_string_argument (procedure, name, nick, blurb, "", G_PARAM_READWRITE);
}

static void
add_layer_end (GimpProcedure *procedure,
               const gchar   *which,
               const gchar   *type_nick,
               const gchar   *layer_nick,
               const gchar   *prompt_nick,
               const gchar   *default_type)
{
  gchar *type   = g_strdup_printf ("%s-type", which);
  gchar *layer  = g_strdup_printf ("%s-layer", which);
  gchar *prompt = g_strdup_printf ("%s-prompt", which);

  gimp_procedure_add_choice_argument (procedure, type, type_nick,
                                      _("Whether this end is a layer or a prompt"),
                                      gimp_choice_new_with_values
                                        ("layer",  0, _("Layer"),  NULL,
                                         "prompt", 1, _("Prompt"), NULL,
                                         NULL),
                                      default_type, G_PARAM_READWRITE);
  gimp_procedure_add_layer_argument (procedure, layer, layer_nick,
                                     _("The layer at this end (when the type is “layer”)"),
                                     TRUE, G_PARAM_READWRITE);
  add_prompt_argument (procedure, prompt, prompt_nick,
                       _("The text at this end (when the type is “prompt”)"));
  g_free (type);
  g_free (layer);
  g_free (prompt);
}

void
unclip_params_add_arguments (GimpProcedure *procedure,
                             UnclipProc     proc)
{
  switch (proc)
    {
    case UNCLIP_PROC_TEXT_TO_IMAGE:
      add_prompt_argument (procedure, "prompt", _("_Prompt"),
                           _("What the image should show"));
      break;

    case UNCLIP_PROC_VARIATIONS:
      break;

    case UNCLIP_PROC_INTERPOLATE:
      add_layer_end (procedure, "start", _("Start _kind"), _("Start la_yer"),
                     _("Start te_xt"), "layer");
      add_layer_end (procedure, "end", _("End ki_nd"), _("End la_yer"),
                     _("End te_xt"), "prompt");
      gimp_procedure_add_double_argument (procedure, "position", _("Pos_ition"),
                                          _("Where between the ends the image lies: 0 is "
                                            "the start, 1 the end (with more than one "
                                            "frame: the frame the preview shows)"),
                                          0.0, 1.0, 0.5, G_PARAM_READWRITE);
      gimp_procedure_add_int_argument (procedure, "frames", _("_Frames"),
                                       _("1: one image at the position; more: that many "
                                         "images evenly spaced from the start to the end"),
                                       1, 32, 5, G_PARAM_READWRITE);
      break;

    case UNCLIP_PROC_TEXT_DIFF:
      add_prompt_argument (procedure, "prompt", _("C_hange towards"),
                           _("A description of what the layer should become"));
      add_prompt_argument (procedure, "source-prompt", _("Curre_ntly shows"),
                           _("A description of what the layer shows now (may be empty)"));
      gimp_procedure_add_double_argument (procedure, "amount", _("_Amount"),
                                          _("How far to move towards the new description: "
                                            "0 keeps the layer's look, 1 goes all the way"),
                                          0.0, 1.0, 0.5, G_PARAM_READWRITE);
      break;
    }

  gimp_procedure_add_int_argument (procedure, "seed", _("S_eed"),
                                   _("Starting point of the random numbers: the same seed "
                                     "and settings give the same image"),
                                   0, G_MAXINT, 0, G_PARAM_READWRITE);
  gimp_procedure_add_boolean_argument (procedure, "random-seed", _("Ne_w seed each run"),
                                       _("Draw a new seed for every run (the seed used is "
                                         "in the layer name)"),
                                       TRUE, G_PARAM_READWRITE);

  if (proc == UNCLIP_PROC_TEXT_TO_IMAGE || proc == UNCLIP_PROC_VARIATIONS)
    gimp_procedure_add_int_argument (procedure, "num-images", _("Number of _images"),
                                     _("How many images to make in one run (each becomes "
                                       "a layer)"),
                                     1, 16, 1, G_PARAM_READWRITE);

  gimp_procedure_add_choice_argument (procedure, "quality", _("_Quality"),
                                      _("Fast uses fewer steps; Custom uses the advanced "
                                        "settings below"),
                                      gimp_choice_new_with_values
                                        ("fast",    UNCLIP_QUALITY_FAST,
                                         _("Fast"), NULL,
                                         "default", UNCLIP_QUALITY_DEFAULT,
                                         _("Default"), NULL,
                                         "custom",  UNCLIP_QUALITY_CUSTOM,
                                         _("Custom (advanced settings)"), NULL,
                                         NULL),
                                      "default", G_PARAM_READWRITE);

  if (proc == UNCLIP_PROC_TEXT_TO_IMAGE || proc == UNCLIP_PROC_INTERPOLATE)
    gimp_procedure_add_int_argument (procedure, "prior-steps", _("_Prior steps"),
                                     _("Denoising steps of the prior (text to image "
                                       "embedding); custom quality only"),
                                     2, 200, presets[UNCLIP_QUALITY_DEFAULT].prior_steps,
                                     G_PARAM_READWRITE);
  gimp_procedure_add_int_argument (procedure, "decoder-steps", _("_Decoder steps"),
                                   _("Denoising steps of the decoder (the small first "
                                     "picture); custom quality only"),
                                   2, 200, presets[UNCLIP_QUALITY_DEFAULT].decoder_steps,
                                   G_PARAM_READWRITE);
  gimp_procedure_add_int_argument (procedure, "super-res-steps", _("_Upscaler steps"),
                                   _("Denoising steps of the super-resolution upscaler; "
                                     "custom quality only"),
                                   2, 100, presets[UNCLIP_QUALITY_DEFAULT].sr_steps,
                                   G_PARAM_READWRITE);
  if (proc == UNCLIP_PROC_TEXT_TO_IMAGE || proc == UNCLIP_PROC_INTERPOLATE)
    gimp_procedure_add_double_argument (procedure, "prior-guidance", _("Prior _guidance"),
                                        _("How strictly the prior follows the prompt; "
                                          "custom quality only"),
                                        1.0, 30.0,
                                        presets[UNCLIP_QUALITY_DEFAULT].prior_guidance,
                                        G_PARAM_READWRITE);
  gimp_procedure_add_double_argument (procedure, "decoder-guidance", _("Decoder gu_idance"),
                                      _("How strictly the decoder follows the embedding; "
                                        "custom quality only"),
                                      1.0, 30.0,
                                      presets[UNCLIP_QUALITY_DEFAULT].decoder_guidance,
                                      G_PARAM_READWRITE);

  gimp_procedure_add_string_argument (procedure, "device", _("De_vice"),
                                      _("Name (or part of it) of the Vulkan device to use; "
                                        "empty: the fastest one found"),
                                      "", G_PARAM_READWRITE);
  gimp_procedure_add_file_argument (procedure, "model-folder", _("_Model folder"),
                                    _("Folder of an unCLIP model in the diffusers layout "
                                      "(holds model_index.json); none: the default model, or "
                                      "$UNCLIP_MODEL"),
                                    GIMP_FILE_CHOOSER_ACTION_SELECT_FOLDER, TRUE, NULL,
                                    G_PARAM_READWRITE);
  gimp_procedure_add_choice_argument (procedure, "placement", _("Pl_acement"),
                                      _("Where the new layers go"),
                                      gimp_choice_new_with_values
                                        ("native",    UNCLIP_PLACE_NATIVE,
                                         _("Native size, centred"), NULL,
                                         "image",     UNCLIP_PLACE_IMAGE,
                                         _("Scaled to the image"), NULL,
                                         "selection", UNCLIP_PLACE_SELECTION,
                                         _("Scaled to the selection"), NULL,
                                         NULL),
                                      "native", G_PARAM_READWRITE);

  gimp_procedure_add_image_return_value (procedure, "result-image", _("Image"),
                                         _("The image the layers were added to (new when "
                                           "none was given)"),
                                         TRUE, G_PARAM_READWRITE);
  gimp_procedure_add_core_object_array_return_value (procedure, "layers", _("Layers"),
                                                     _("The new layers, in order"),
                                                     GIMP_TYPE_LAYER, G_PARAM_READWRITE);
  gimp_procedure_add_int_return_value (procedure, "seed-used", _("Seed used"),
                                       _("The seed of this run (drawn when random-seed "
                                         "was set)"),
                                       0, G_MAXINT, 0, G_PARAM_READWRITE);
}

static gboolean
has_property (GimpProcedureConfig *config,
              const gchar         *name)
{
  return g_object_class_find_property (G_OBJECT_GET_CLASS (config), name) != NULL;
}

static gint
get_int (GimpProcedureConfig *config,
         const gchar         *name,
         gint                 fallback)
{
  gint value = fallback;

  if (has_property (config, name))
    g_object_get (config, name, &value, NULL);

  return value;
}

static gdouble
get_double (GimpProcedureConfig *config,
            const gchar         *name,
            gdouble              fallback)
{
  gdouble value = fallback;

  if (has_property (config, name))
    g_object_get (config, name, &value, NULL);

  return value;
}

static gchar *
get_string (GimpProcedureConfig *config,
            const gchar         *name)
{
  gchar *value = NULL;

  if (has_property (config, name))
    g_object_get (config, name, &value, NULL);

  return value ? g_strstrip (value) : g_strdup ("");
}

void
unclip_params_from_config (UnclipParams        *params,
                           UnclipProc           proc,
                           GimpProcedureConfig *config)
{
  GFile *folder = NULL;
  gint   i;

  memset (params, 0, sizeof *params);
  params->proc = proc;

  params->prompt        = get_string (config, "prompt");
  params->source_prompt = get_string (config, "source-prompt");
  params->device        = get_string (config, "device");
  params->seed          = (guint32) get_int (config, "seed", 0);
  params->num_images    = get_int (config, "num-images", 1);
  params->frames        = get_int (config, "frames", 1);
  params->position      = get_double (config, "position", 0.5);
  params->amount        = get_double (config, "amount", 0.5);

  g_object_get (config, "random-seed", &params->random_seed, NULL);
  if (params->random_seed)
    params->seed = (guint32) g_random_int_range (0, G_MAXINT);

  params->quality   = gimp_procedure_config_get_choice_id (config, "quality");
  params->placement = gimp_procedure_config_get_choice_id (config, "placement");

  if (params->quality == UNCLIP_QUALITY_CUSTOM)
    {
      params->prior_steps      = get_int (config, "prior-steps", 25);
      params->decoder_steps    = get_int (config, "decoder-steps", 25);
      params->sr_steps         = get_int (config, "super-res-steps", 7);
      params->prior_guidance   = get_double (config, "prior-guidance", 4.0);
      params->decoder_guidance = get_double (config, "decoder-guidance", 8.0);
    }
  else
    {
      UnclipQuality q = params->quality == UNCLIP_QUALITY_FAST ? UNCLIP_QUALITY_FAST
                                                               : UNCLIP_QUALITY_DEFAULT;

      params->quality          = q;
      params->prior_steps      = presets[q].prior_steps;
      params->decoder_steps    = presets[q].decoder_steps;
      params->sr_steps         = presets[q].sr_steps;
      params->prior_guidance   = presets[q].prior_guidance;
      params->decoder_guidance = presets[q].decoder_guidance;
    }

  for (i = 0; i < 2; i++)
    {
      const gchar *which = i == 0 ? "start" : "end";
      gchar       *name;

      name = g_strdup_printf ("%s-type", which);
      if (has_property (config, name))
        params->end_is_layer[i] = gimp_procedure_config_get_choice_id (config, name) == 0;
      g_free (name);

      name = g_strdup_printf ("%s-layer", which);
      if (has_property (config, name))
        g_object_get (config, name, &params->end_layer[i], NULL);
      g_free (name);

      name = g_strdup_printf ("%s-prompt", which);
      params->end_prompt[i] = get_string (config, name);
      g_free (name);
    }

  g_object_get (config, "model-folder", &folder, NULL);
  if (folder)
    {
      params->model_dir = g_file_get_path (folder);
      /* A GFile made from a bare path string that was taken for a URI (a hand-written
       * settings file, say) has no path: the string itself is the path. */
      if (! params->model_dir)
        {
          gchar *uri = g_file_get_uri (folder);

          if (uri && g_path_is_absolute (uri))
            params->model_dir = uri;
          else
            g_free (uri);
        }
    }
  if (params->model_dir && ! params->model_dir[0])
    g_clear_pointer (&params->model_dir, g_free);
  g_clear_object (&folder);
}

void
unclip_params_clear (UnclipParams *params)
{
  gint i;

  g_free (params->prompt);
  g_free (params->source_prompt);
  g_free (params->device);
  g_free (params->model_dir);
  for (i = 0; i < 2; i++)
    {
      g_clear_object (&params->end_layer[i]);
      g_free (params->end_prompt[i]);
    }
  memset (params, 0, sizeof *params);
}

struct unclip_run_params
unclip_params_run (const UnclipParams *params)
{
  struct unclip_run_params run = unclip_run_params_default ();

  run.seed             = params->seed;
  run.num_images       = MAX (1, params->num_images);
  run.prior_steps      = params->prior_steps;
  run.decoder_steps    = params->decoder_steps;
  run.sr_steps         = params->sr_steps;
  run.prior_guidance   = (float) params->prior_guidance;
  run.decoder_guidance = (float) params->decoder_guidance;

  return run;
}

guint32
unclip_params_needs (const UnclipParams *params)
{
  guint32 needs = 0;
  gint    i;

  switch (params->proc)
    {
    case UNCLIP_PROC_TEXT_TO_IMAGE:
      needs = UNCLIP_FEATURE_TEXT_TO_IMAGE | UNCLIP_FEATURE_DECODE;
      break;

    case UNCLIP_PROC_VARIATIONS:
      needs = UNCLIP_FEATURE_IMAGE_EMBED | UNCLIP_FEATURE_DECODE;
      break;

    case UNCLIP_PROC_INTERPOLATE:
      needs = UNCLIP_FEATURE_DECODE;
      for (i = 0; i < 2; i++)
        needs |= params->end_is_layer[i] ? UNCLIP_FEATURE_IMAGE_EMBED
                                         : UNCLIP_FEATURE_TEXT_TO_IMAGE;
      break;

    case UNCLIP_PROC_TEXT_DIFF:
      needs = UNCLIP_FEATURE_IMAGE_EMBED | UNCLIP_FEATURE_TEXT_EMBED | UNCLIP_FEATURE_DECODE;
      break;
    }

  return needs;
}

gdouble *
unclip_params_positions (const UnclipParams *params,
                         gint               *n_positions)
{
  gint     n = MAX (1, params->frames);
  gdouble *positions = g_new (gdouble, n);
  gint     i;

  if (n == 1)
    positions[0] = CLAMP (params->position, 0.0, 1.0);
  else
    for (i = 0; i < n; i++)
      positions[i] = (gdouble) i / (gdouble) (n - 1);

  *n_positions = n;

  return positions;
}

gboolean
unclip_params_validate (const UnclipParams  *params,
                        GError             **error)
{
  gint i;

  switch (params->proc)
    {
    case UNCLIP_PROC_TEXT_TO_IMAGE:
      if (! params->prompt[0])
        {
          g_set_error_literal (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_PROMPT,
                               _("The prompt is empty: describe the image to make."));
          return FALSE;
        }
      break;

    case UNCLIP_PROC_TEXT_DIFF:
      if (! params->prompt[0])
        {
          g_set_error_literal (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_PROMPT,
                               _("“Change towards” is empty: describe what the layer "
                                 "should become."));
          return FALSE;
        }
      break;

    case UNCLIP_PROC_INTERPOLATE:
      for (i = 0; i < 2; i++)
        {
          if (params->end_is_layer[i] && ! params->end_layer[i])
            {
              g_set_error (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_ARGUMENT,
                           i == 0 ? _("The start is a layer, but no start layer is chosen.")
                                  : _("The end is a layer, but no end layer is chosen."));
              return FALSE;
            }
          if (! params->end_is_layer[i] && ! params->end_prompt[i][0])
            {
              g_set_error (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_PROMPT,
                           i == 0 ? _("The start is a prompt, but the start prompt is empty.")
                                  : _("The end is a prompt, but the end prompt is empty."));
              return FALSE;
            }
        }
      break;

    case UNCLIP_PROC_VARIATIONS:
      break;
    }

  return TRUE;
}

/* A prompt shortened for a layer name, on a character boundary. */
static gchar *
short_text (const gchar *text)
{
  glong  n = g_utf8_strlen (text, -1);
  gchar *cut;
  gchar *result;

  if (n <= NAME_PROMPT_CHARS)
    return g_strdup (text);

  cut = g_utf8_substring (text, 0, NAME_PROMPT_CHARS - 1);
  result = g_strconcat (cut, "…", NULL);
  g_free (cut);

  return result;
}

static gchar *
end_label (const UnclipParams *params,
           gint                i)
{
  if (params->end_is_layer[i] && params->end_layer[i])
    return g_strdup (gimp_item_get_name (GIMP_ITEM (params->end_layer[i])));

  return short_text (params->end_prompt[i] ? params->end_prompt[i] : "");
}

gchar *
unclip_params_layer_name (const UnclipParams *params,
                          const gchar        *source_name,
                          gint                index,
                          gint                n,
                          gdouble             position)
{
  gchar *what = NULL;
  gchar *seed;
  gchar *name;

  if (n > 1 && params->proc != UNCLIP_PROC_INTERPOLATE)
    /* TRANSLATORS: end of a layer name: the seed, the image's number and how many images the
     * run made, e.g. "(seed 42, 2/4)" */
    seed = g_strdup_printf (_("(seed %u, %d/%d)"), params->seed, index + 1, n);
  else
    /* TRANSLATORS: end of a layer name, e.g. "(seed 42)" */
    seed = g_strdup_printf (_("(seed %u)"), params->seed);

  switch (params->proc)
    {
    case UNCLIP_PROC_TEXT_TO_IMAGE:
      what = short_text (params->prompt);
      break;

    case UNCLIP_PROC_VARIATIONS:
      /* TRANSLATORS: layer name; %s is the source layer's name */
      what = g_strdup_printf (_("Variation of %s"), source_name ? source_name : "");
      break;

    case UNCLIP_PROC_INTERPOLATE:
      {
        gchar *a = end_label (params, 0);
        gchar *b = end_label (params, 1);

        /* TRANSLATORS: layer name of an interpolation frame: start, end, position 0..1 */
        what = g_strdup_printf (_("%s → %s at %.2f"), a, b, position);
        g_free (a);
        g_free (b);
      }
      break;

    case UNCLIP_PROC_TEXT_DIFF:
      {
        gchar *target = short_text (params->prompt);

        /* TRANSLATORS: layer name of a text diff: source layer, new text, amount 0..1 */
        what = g_strdup_printf (_("%s → “%s” ×%.2f"), source_name ? source_name : "",
                                target, params->amount);
        g_free (target);
      }
      break;
    }

  name = g_strdup_printf ("%s %s", what, seed);
  g_free (what);
  g_free (seed);

  return name;
}

/* Short decimal text (g_key_file_set_double writes 0.2 as 0.20000000000000001): nine
 * significant digits give back the float the engine used exactly. */
static void
set_number (GKeyFile    *kf,
            const gchar *group,
            const gchar *key,
            gdouble      value)
{
  gchar buf[G_ASCII_DTOSTR_BUF_SIZE];

  g_key_file_set_value (kf, group, key, g_ascii_formatd (buf, sizeof buf, "%.9g", value));
}

gchar *
unclip_params_to_parasite (const UnclipParams *params,
                           const gchar        *model_dir,
                           const gchar        *device_used,
                           gint                index,
                           gint                n,
                           gdouble             position)
{
  static const gchar *procs[] = { "text-to-image", "variations", "interpolate", "text-diff" };
  static const gchar *qualities[] = { "fast", "default", "custom" };
  GKeyFile           *kf = g_key_file_new ();
  const gchar        *group = "unclip";
  gchar              *text;
  gint                i;

  g_key_file_set_string (kf, group, "procedure", procs[params->proc]);
  if (params->proc == UNCLIP_PROC_TEXT_TO_IMAGE || params->proc == UNCLIP_PROC_TEXT_DIFF)
    g_key_file_set_string (kf, group, "prompt", params->prompt);
  if (params->proc == UNCLIP_PROC_TEXT_DIFF)
    {
      g_key_file_set_string (kf, group, "source-prompt", params->source_prompt);
      set_number (kf, group, "amount", params->amount);
    }
  if (params->proc == UNCLIP_PROC_INTERPOLATE)
    {
      for (i = 0; i < 2; i++)
        {
          const gchar *which = i == 0 ? "start" : "end";
          gchar       *key   = g_strdup_printf ("%s-%s", which,
                                                params->end_is_layer[i] ? "layer" : "prompt");
          gchar       *label = params->end_is_layer[i] ? end_label (params, i)
                                                       : g_strdup (params->end_prompt[i]);

          g_key_file_set_string (kf, group, key, label);
          g_free (key);
          g_free (label);
        }
      set_number (kf, group, "position", position);
      g_key_file_set_integer (kf, group, "frames", params->frames);
    }
  g_key_file_set_uint64 (kf, group, "seed", params->seed);
  g_key_file_set_integer (kf, group, "image-index", index);
  g_key_file_set_integer (kf, group, "num-images", n);
  g_key_file_set_string (kf, group, "quality", qualities[params->quality]);
  g_key_file_set_integer (kf, group, "prior-steps", params->prior_steps);
  g_key_file_set_integer (kf, group, "decoder-steps", params->decoder_steps);
  g_key_file_set_integer (kf, group, "super-res-steps", params->sr_steps);
  set_number (kf, group, "prior-guidance", params->prior_guidance);
  set_number (kf, group, "decoder-guidance", params->decoder_guidance);
  g_key_file_set_string (kf, group, "model-folder", model_dir ? model_dir : "");
  g_key_file_set_string (kf, group, "device", device_used ? device_used : "");
  g_key_file_set_string (kf, group, "engine-version", unclip_version ());

  text = g_key_file_to_data (kf, NULL, NULL);
  g_key_file_free (kf);

  return text;
}
