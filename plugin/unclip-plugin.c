/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-plugin.c: the GimpPlugIn, its four procedures (Filters > Render > unCLIP) and their
 * runs, interactive (the dialog of ui/) and non-interactive (scripts).
 *
 * A run: the arguments are read on the main thread, source pixels are copied out of GIMP,
 * the engine runs on the session's worker thread (unclip-session.c) while the main loop turns
 * its progress into GIMP's progress bar and the dialog's, and only when the engine has
 * finished are the layers written, in one undo group (unclip-layers.c). A cancelled or failed
 * run therefore never touches the image.
 */

#include "config.h"

#include <math.h>
#include <string.h>

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include <glib/gi18n-lib.h>

#include "unclip-dialog.h"

#include "unclip-errors.h"
#include "unclip-layers.h"
#include "unclip-params.h"
#include "unclip-session.h"


#define UNCLIP_TYPE_PLUG_IN (unclip_plug_in_get_type ())
G_DECLARE_FINAL_TYPE (UnclipPlugIn, unclip_plug_in, UNCLIP, PLUG_IN, GimpPlugIn)

struct _UnclipPlugIn
{
  GimpPlugIn parent_instance;
};

/* Everything one call of a procedure needs, interactive or not. */
typedef struct
{
  GimpProcedure       *procedure;
  GimpProcedureConfig *config;
  UnclipProc           proc;
  GimpRunMode          run_mode;
  GimpImage           *image;          /* may be NULL, or become a new image       */
  GimpDrawable        *drawable;       /* the source / anchor, may be NULL         */
  UnclipSession       *session;
  GtkWidget           *dialog;

  /* The run in flight. */
  UnclipParams         params;
  gboolean             have_params;
  GeglRectangle        source_area;
  gboolean             have_area;
  gboolean             progress_active;
  gint                 check_serial;   /* only the newest model check is shown     */
  gint                 preview_serial;

  /* Results of the last successful run. */
  GimpImage           *result_image;
  GimpLayer          **result_layers;
  guint32              result_seed;
  gint                 n_runs;
} RunState;


static GList          * unclip_query_procedures  (GimpPlugIn           *plug_in);
static GimpProcedure  * unclip_create_procedure  (GimpPlugIn           *plug_in,
                                                  const gchar          *name);
static gboolean         unclip_set_i18n          (GimpPlugIn           *plug_in,
                                                  const gchar          *procedure_name,
                                                  gchar               **gettext_domain,
                                                  gchar               **catalog_dir);
static GimpValueArray * unclip_run               (GimpProcedure        *procedure,
                                                  GimpRunMode           run_mode,
                                                  GimpImage            *image,
                                                  GimpDrawable        **drawables,
                                                  GimpProcedureConfig  *config,
                                                  gpointer              run_data);


G_DEFINE_TYPE (UnclipPlugIn, unclip_plug_in, GIMP_TYPE_PLUG_IN)

GIMP_MAIN (UNCLIP_TYPE_PLUG_IN)


static const struct
{
  const gchar *name;
  UnclipProc   proc;
} procedures[] =
{
  { PROC_TEXT_TO_IMAGE, UNCLIP_PROC_TEXT_TO_IMAGE },
  { PROC_VARIATIONS,    UNCLIP_PROC_VARIATIONS    },
  { PROC_INTERPOLATE,   UNCLIP_PROC_INTERPOLATE   },
  { PROC_TEXT_DIFF,     UNCLIP_PROC_TEXT_DIFF     },
};


static void
unclip_plug_in_class_init (UnclipPlugInClass *klass)
{
  GimpPlugInClass *plug_in_class = GIMP_PLUG_IN_CLASS (klass);

  plug_in_class->query_procedures = unclip_query_procedures;
  plug_in_class->create_procedure = unclip_create_procedure;
  plug_in_class->set_i18n         = unclip_set_i18n;
}

static void
unclip_plug_in_init (UnclipPlugIn *plug_in)
{
}

static GList *
unclip_query_procedures (GimpPlugIn *plug_in)
{
  GList *list = NULL;
  gsize  i;

  for (i = 0; i < G_N_ELEMENTS (procedures); i++)
    list = g_list_append (list, g_strdup (procedures[i].name));

  return list;
}

static gboolean
unclip_set_i18n (GimpPlugIn   *plug_in,
                 const gchar  *procedure_name,
                 gchar       **gettext_domain,
                 gchar       **catalog_dir)
{
  /* Catalogues live in locale/ beside the plug-in (GIMP's default place); the domain is ours,
   * not the binary's name. */
  *gettext_domain = g_strdup (GETTEXT_PACKAGE);
  *catalog_dir    = NULL;

  return TRUE;
}

static GimpProcedure *
unclip_create_procedure (GimpPlugIn  *plug_in,
                         const gchar *name)
{
  GimpProcedure *procedure = NULL;
  UnclipProc     proc;
  gsize          i;

  for (i = 0; i < G_N_ELEMENTS (procedures); i++)
    if (! strcmp (name, procedures[i].name))
      break;
  if (i == G_N_ELEMENTS (procedures))
    return NULL;

  proc = procedures[i].proc;
  procedure = gimp_image_procedure_new (plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN,
                                        unclip_run, GINT_TO_POINTER (proc), NULL);

  gimp_procedure_set_image_types (procedure, "*");
  gimp_procedure_set_attribution (procedure, "gimp-unclip authors", "gimp-unclip authors",
                                  "2026");

  switch (proc)
    {
    case UNCLIP_PROC_TEXT_TO_IMAGE:
      gimp_procedure_set_sensitivity_mask (procedure, GIMP_PROCEDURE_SENSITIVE_ALWAYS);
      gimp_procedure_set_menu_label (procedure, _("_Text to Image..."));
      gimp_procedure_set_documentation (procedure,
                                        _("Make images from a text prompt with unCLIP"),
                                        _("Makes new layers from a description, with an "
                                          "unCLIP model (Karlo's method) run on the GPU "
                                          "through Vulkan. The layers go into the image, or "
                                          "into a new image when none is open. Each layer is "
                                          "named after the prompt and the seed, and carries "
                                          "its parameters in the parasite "
                                          "“gimp-unclip-parameters”."),
                                        name);
      break;

    case UNCLIP_PROC_VARIATIONS:
      gimp_procedure_set_sensitivity_mask (procedure, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
      gimp_procedure_set_menu_label (procedure, _("_Variations..."));
      gimp_procedure_set_documentation (procedure,
                                        _("Make variations of a layer with unCLIP"),
                                        _("Makes new layers that vary the active layer (the "
                                          "selection's bounding box within it when there is "
                                          "a selection): the image is turned into a CLIP "
                                          "embedding and decoded again with new noise."),
                                        name);
      break;

    case UNCLIP_PROC_INTERPOLATE:
      gimp_procedure_set_sensitivity_mask (procedure, GIMP_PROCEDURE_SENSITIVE_ALWAYS);
      gimp_procedure_set_menu_label (procedure, _("_Interpolate..."));
      gimp_procedure_set_documentation (procedure,
                                        _("Blend two layers or prompts with unCLIP"),
                                        _("Makes images between two ends, each a layer or a "
                                          "prompt, by moving along the sphere between their "
                                          "CLIP embeddings: one image at a position, or "
                                          "several frames from the start to the end."),
                                        name);
      break;

    case UNCLIP_PROC_TEXT_DIFF:
      gimp_procedure_set_sensitivity_mask (procedure, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
      gimp_procedure_set_menu_label (procedure, _("Te_xt Diff..."));
      gimp_procedure_set_documentation (procedure,
                                        _("Change a layer towards a text edit with unCLIP"),
                                        _("Moves the active layer's CLIP image embedding in "
                                          "the direction from one description to another "
                                          "(DALL-E 2's text diffs) and decodes the result."),
                                        name);
      break;
    }

  /* After the menu label: GIMP wants the label first. */
  gimp_procedure_add_menu_path (procedure, "<Image>/Filters/Render/unCLIP");

  unclip_params_add_arguments (procedure, proc);

  return procedure;
}


/*  Making a job from the settings (main thread)  */

static UnclipJobKind
job_kind (UnclipProc proc)
{
  switch (proc)
    {
    case UNCLIP_PROC_VARIATIONS:  return UNCLIP_JOB_VARIATIONS;
    case UNCLIP_PROC_INTERPOLATE: return UNCLIP_JOB_INTERPOLATE;
    case UNCLIP_PROC_TEXT_DIFF:   return UNCLIP_JOB_TEXT_DIFF;
    default:                      return UNCLIP_JOB_TEXT_TO_IMAGE;
    }
}

static gboolean
read_endpoint_layer (GimpLayer       *layer,
                     UnclipEndpoint  *end,
                     GError         **error)
{
  return unclip_layers_read_source (GIMP_DRAWABLE (layer), &end->image, NULL, error);
}

/* Builds the job for the current params; copies source pixels out of GIMP. */
static UnclipJob *
make_job (RunState  *state,
          GError   **error)
{
  UnclipParams *p   = &state->params;
  UnclipJob    *job = unclip_job_new (job_kind (p->proc));
  gint          i;

  job->model_dir = g_strdup (p->model_dir);
  job->gimp_dir  = g_strdup (gimp_directory ());
  job->device    = g_strdup (p->device);
  job->needs     = unclip_params_needs (p);
  job->run       = unclip_params_run (p);
  state->have_area = FALSE;

  switch (p->proc)
    {
    case UNCLIP_PROC_TEXT_TO_IMAGE:
      job->prompt = g_strdup (p->prompt);
      break;

    case UNCLIP_PROC_TEXT_DIFF:
      job->prompt  = g_strdup (p->prompt);
      job->prompt2 = g_strdup (p->source_prompt);
      job->amount  = p->amount;
      /* fall through */
    case UNCLIP_PROC_VARIATIONS:
      if (! unclip_layers_read_source (state->drawable, &job->source, &state->source_area,
                                       error))
        goto fail;
      state->have_area = TRUE;
      break;

    case UNCLIP_PROC_INTERPOLATE:
      job->run.num_images = 1;
      for (i = 0; i < 2; i++)
        {
          job->ends[i].is_image = p->end_is_layer[i];
          if (p->end_is_layer[i])
            {
              if (! read_endpoint_layer (p->end_layer[i], &job->ends[i], error))
                goto fail;
            }
          else
            {
              job->ends[i].prompt = g_strdup (p->end_prompt[i]);
            }
        }
      job->positions = unclip_params_positions (p, &job->n_positions);
      break;
    }

  return job;

fail:
  unclip_job_free (job);
  return NULL;
}

/* The layer the results go above: the source for variations and text diffs, else the first
 * selected layer. */
static GimpLayer *
anchor_layer (RunState *state)
{
  if (state->drawable && GIMP_IS_LAYER (state->drawable) &&
      gimp_item_is_valid (GIMP_ITEM (state->drawable)))
    return GIMP_LAYER (state->drawable);

  return NULL;
}

static const gchar *
stage_label (const gchar *stage)
{
  if (! stage || ! *stage)
    return _("Working");
  if (g_str_has_prefix (stage, "load"))
    return _("Loading the model");
  if (! strcmp (stage, "tokenizer") || ! strcmp (stage, "text_encoder"))
    return _("Reading the prompt");
  if (! strcmp (stage, "image_encoder") || ! strcmp (stage, "feature_extractor"))
    return _("Reading the image");
  if (! strcmp (stage, "prior"))
    return _("Prior: from text to image embedding");
  if (! strcmp (stage, "text_proj") || ! strcmp (stage, "interpolate") ||
      ! strcmp (stage, "text_diff"))
    return _("Preparing the embedding");
  if (! strcmp (stage, "decoder"))
    return _("Decoder: small image");
  if (g_str_has_prefix (stage, "super_res"))
    return _("Upscaling");

  return stage;
}

static void
on_progress (UnclipJob                    *job,
             const struct unclip_progress *p,
             gpointer                      user_data)
{
  RunState *state = user_data;
  gchar    *text;

  if (p->n_steps > 0 && p->step > 0)
    /* TRANSLATORS: progress text: stage name, step, number of steps */
    text = g_strdup_printf (_("%s, step %d of %d"), stage_label (p->stage), p->step,
                            p->n_steps);
  else
    text = g_strdup (stage_label (p->stage));

  if (state->progress_active)
    {
      gimp_progress_set_text (text);
      gimp_progress_update (CLAMP (p->fraction, 0.0, 1.0));
    }
  if (state->dialog)
    unclip_dialog_set_progress (state->dialog, text, CLAMP (p->fraction, 0.0, 1.0));

  g_free (text);
}

/* Writes a finished job's images as layers. Main thread. */
static gboolean
finish_run (RunState   *state,
            UnclipJob  *job,
            GError    **error)
{
  UnclipParams *p = &state->params;
  UnclipResult *results;
  GimpImage    *image = NULL;
  GimpLayer   **layers = NULL;
  gchar        *source_name = NULL;
  gint          i;

  if ((*error = unclip_error_from_job (job)))
    return FALSE;

  if (job->n_images < 1)
    {
      g_set_error_literal (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_INTERNAL,
                           _("The engine returned no image."));
      return FALSE;
    }

  if (state->image && gimp_image_is_valid (state->image))
    {
      image = state->image;
    }
  else if (p->proc == UNCLIP_PROC_VARIATIONS || p->proc == UNCLIP_PROC_TEXT_DIFF)
    {
      g_set_error_literal (error, UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_FAILED,
                           _("The image was closed while the engine was working."));
      return FALSE;
    }

  if (state->drawable && gimp_item_is_valid (GIMP_ITEM (state->drawable)))
    source_name = g_strdup (gimp_item_get_name (GIMP_ITEM (state->drawable)));

  results = g_new0 (UnclipResult, job->n_images);
  for (i = 0; i < job->n_images; i++)
    {
      gdouble position = (job->positions && i < job->n_positions) ? job->positions[i] : 0.0;

      results[i].image    = &job->images[i];
      results[i].name     = unclip_params_layer_name (p, source_name, i, job->n_images,
                                                      position);
      results[i].parasite = unclip_params_to_parasite (p, job->model_dir, job->device_used,
                                                       i, job->n_images, position);
    }

  image = unclip_layers_write (image, anchor_layer (state),
                               state->have_area ? &state->source_area : NULL,
                               p->placement, results, job->n_images, &layers, error);

  for (i = 0; i < job->n_images; i++)
    {
      g_free (results[i].name);
      g_free (results[i].parasite);
    }
  g_free (results);
  g_free (source_name);

  if (! image)
    return FALSE;

  if (image != state->image)
    {
      /* A new image: later runs of the same dialog add to it. */
      state->image = image;
      if (state->run_mode == GIMP_RUN_INTERACTIVE)
        gimp_display_new (image);
    }

  g_free (state->result_layers);
  state->result_layers = layers;
  state->result_image  = image;
  state->result_seed   = p->seed;
  state->n_runs++;

  if (state->run_mode == GIMP_RUN_INTERACTIVE)
    gimp_displays_flush ();

  return TRUE;
}

static void
progress_begin (RunState *state)
{
  gimp_progress_init (_("unCLIP"));
  state->progress_active = TRUE;
}

static void
progress_end (RunState *state)
{
  if (state->progress_active)
    gimp_progress_end ();
  state->progress_active = FALSE;
}


/*  Non-interactive runs  */

static GimpValueArray *
run_once (RunState *state)
{
  GimpValueArray *values;
  UnclipJob      *job;
  GError         *error = NULL;

  unclip_params_from_config (&state->params, state->proc, state->config);
  state->have_params = TRUE;

  if (! unclip_params_validate (&state->params, &error) ||
      ! (job = make_job (state, &error)))
    return gimp_procedure_new_return_values (state->procedure, GIMP_PDB_CALLING_ERROR,
                                             error);

  state->session = unclip_session_new ();
  progress_begin (state);

  job = unclip_session_run_sync (state->session, job, on_progress, state);
  finish_run (state, job, &error);
  unclip_job_free (job);

  progress_end (state);

  if (error)
    {
      GimpPDBStatusType status = g_error_matches (error, UNCLIP_PLUG_ERROR,
                                                  UNCLIP_PLUG_ERROR_CANCELLED)
                                 ? GIMP_PDB_CANCEL : GIMP_PDB_EXECUTION_ERROR;

      return gimp_procedure_new_return_values (state->procedure, status, error);
    }

  values = gimp_procedure_new_return_values (state->procedure, GIMP_PDB_SUCCESS, NULL);
  GIMP_VALUES_SET_IMAGE (values, 1, state->result_image);
  GIMP_VALUES_SET_CORE_OBJECT_ARRAY (values, 2, state->result_layers);
  GIMP_VALUES_SET_INT (values, 3, (gint) state->result_seed);

  return values;
}


/*  Interactive runs: the dialog's callbacks  */

static void
on_devices (UnclipJob *job,
            gpointer   user_data)
{
  RunState   *state = user_data;
  GPtrArray  *names = g_ptr_array_new_with_free_func (g_free);
  GPtrArray  *labels = g_ptr_array_new_with_free_func (g_free);
  GError     *error = unclip_error_from_job (job);
  gint        i;

  for (i = 0; i < job->n_devices; i++)
    {
      const struct unclip_device_info *d = &job->devices[i];
      const gchar                     *kind;

      switch (d->type)
        {
        case UNCLIP_DEVICE_DISCRETE_GPU:   kind = _("graphics card"); break;
        case UNCLIP_DEVICE_INTEGRATED_GPU: kind = _("integrated GPU"); break;
        case UNCLIP_DEVICE_VIRTUAL_GPU:    kind = _("virtual GPU"); break;
        case UNCLIP_DEVICE_CPU:            kind = _("processor"); break;
        default:                           kind = _("other"); break;
        }

      g_ptr_array_add (names, g_strdup (d->name));
      if (d->usable)
        g_ptr_array_add (labels, g_strdup_printf ("%s (%s, %" G_GUINT64_FORMAT " MiB)",
                                                  d->name, kind,
                                                  d->device_local_bytes >> 20));
      else
        /* TRANSLATORS: a device the engine cannot use: name, reason */
        g_ptr_array_add (labels, g_strdup_printf (_("%s (unusable: %s)"), d->name,
                                                  d->why_unusable));
    }

  unclip_dialog_set_devices (state->dialog, (const gchar **) names->pdata,
                             (const gchar **) labels->pdata, (gint) names->len,
                             job->default_device, error ? error->message : NULL);

  g_clear_error (&error);
  g_ptr_array_free (names, TRUE);
  g_ptr_array_free (labels, TRUE);
}

typedef struct
{
  RunState *state;
  gint      serial;
} CheckData;

static void
on_model_checked (UnclipJob *job,
                  gpointer   user_data)
{
  CheckData *data  = user_data;
  RunState  *state = data->state;
  GError    *error;

  if (data->serial == state->check_serial && state->dialog)
    {
      error = unclip_error_from_job (job);
      if (error)
        {
          unclip_dialog_set_model_status (state->dialog, FALSE, error->message);
          g_error_free (error);
        }
      else
        {
          gchar *can  = unclip_features_describe (job->features);
          /* TRANSLATORS: model folder status: folder, what it can do, image size, device */
          gchar *text = g_strdup_printf (job->model_searched
                                         ? _("Default model ready (no folder chosen): %s\n"
                                             "Can do %s; makes %d × %d pixels; runs on %s.")
                                         : _("Model ready: %s\nCan do %s; makes %d × %d "
                                             "pixels; runs on %s."),
                                         job->model_dir, can, job->image_size,
                                         job->image_size,
                                         job->device_used ? job->device_used : "?");

          unclip_dialog_set_model_status (state->dialog, TRUE, text);
          g_free (text);
          g_free (can);
        }
    }

  g_free (data);
}

static void
dialog_check_model (gpointer user_data)
{
  RunState     *state = user_data;
  UnclipParams  params;
  UnclipJob    *job;
  CheckData    *data;

  unclip_params_from_config (&params, state->proc, state->config);

  job = unclip_job_new (UNCLIP_JOB_CHECK_MODEL);
  job->model_dir = g_strdup (params.model_dir);
  job->gimp_dir  = g_strdup (gimp_directory ());
  job->device    = g_strdup (params.device);
  job->needs     = unclip_params_needs (&params);
  unclip_params_clear (&params);

  data = g_new0 (CheckData, 1);
  data->state  = state;
  data->serial = ++state->check_serial;

  unclip_dialog_set_model_status (state->dialog, TRUE, _("Checking the model folder…"));
  unclip_session_submit (state->session, job, NULL, on_model_checked, data);
}

static void
on_run_done (UnclipJob *job,
             gpointer   user_data)
{
  RunState *state = user_data;
  GError   *error = NULL;

  progress_end (state);

  if (finish_run (state, job, &error))
    {
      gint  n = job->n_images;
      gchar *text;

      /* Show the seed used, so unticking "Random seed" reproduces this run. */
      g_object_set (state->config, "seed", (gint) state->params.seed, NULL);

      text = g_strdup_printf (ngettext ("Added %d layer (seed %u).",
                                        "Added %d layers (seed %u).", n),
                              n, state->params.seed);
      unclip_dialog_set_message (state->dialog, text, FALSE);
      g_free (text);
    }
  else
    {
      unclip_dialog_set_message (state->dialog, error->message, TRUE);
      g_error_free (error);
    }

  if (state->have_params)
    unclip_params_clear (&state->params);
  state->have_params = FALSE;

  unclip_dialog_set_running (state->dialog, FALSE);
}

static void
dialog_generate (gpointer user_data)
{
  RunState  *state = user_data;
  UnclipJob *job;
  GError    *error = NULL;

  if (state->have_params)
    return;   /* a run is in flight */

  unclip_params_from_config (&state->params, state->proc, state->config);
  state->have_params = TRUE;

  if (! unclip_params_validate (&state->params, &error) ||
      ! (job = make_job (state, &error)))
    {
      unclip_dialog_set_message (state->dialog, error->message, TRUE);
      g_error_free (error);
      unclip_params_clear (&state->params);
      state->have_params = FALSE;
      return;
    }

  /* Submitted first, so that a Stop from here on reaches the job. */
  unclip_session_submit (state->session, job, on_progress, on_run_done, state);

  unclip_dialog_set_running (state->dialog, TRUE);
  unclip_dialog_set_progress (state->dialog, _("Starting…"), 0.0);
  progress_begin (state);
}

static void
dialog_stop (gpointer user_data)
{
  RunState *state = user_data;

  unclip_session_cancel (state->session);
}

typedef struct
{
  RunState *state;
  gint      serial;
} PreviewData;

static void
on_preview_done (UnclipJob *job,
                 gpointer   user_data)
{
  PreviewData *data  = user_data;
  RunState    *state = data->state;

  if (data->serial == state->preview_serial && state->dialog)
    {
      if (job->status == UNCLIP_OK && job->n_images > 0)
        {
          const struct unclip_image *img = &job->images[0];

          unclip_dialog_set_preview (state->dialog, img->pixels, img->width, img->height,
                                     img->channels, img->stride, NULL);
        }
      else if (job->status != UNCLIP_E_CANCELLED)
        {
          GError *error = unclip_error_from_job (job);

          unclip_dialog_set_preview (state->dialog, NULL, 0, 0, 0, 0,
                                     error ? error->message : NULL);
          g_clear_error (&error);
        }
    }

  g_free (data);
}

static void
dialog_preview (gpointer user_data)
{
  RunState     *state = user_data;
  UnclipParams  params;
  RunState      tmp;
  UnclipJob    *job;
  PreviewData  *data;
  GError       *error = NULL;

  unclip_params_from_config (&params, state->proc, state->config);
  if (! unclip_params_validate (&params, &error))
    {
      unclip_dialog_set_preview (state->dialog, NULL, 0, 0, 0, 0, error->message);
      g_error_free (error);
      unclip_params_clear (&params);
      return;
    }

  /* The preview decodes one frame at the slider's position (the nearest frame when there
   * are several), at the decoder's size when the engine can stop there. */
  if (params.frames > 1)
    params.position = round (params.position * (params.frames - 1)) / (params.frames - 1);
  params.frames = 1;
  tmp = *state;
  tmp.params = params;
  job = make_job (&tmp, &error);
  unclip_params_clear (&params);
  if (! job)
    {
      unclip_dialog_set_preview (state->dialog, NULL, 0, 0, 0, 0, error->message);
      g_error_free (error);
      return;
    }
  job->kind = UNCLIP_JOB_PREVIEW;

  data = g_new0 (PreviewData, 1);
  data->state  = state;
  data->serial = ++state->preview_serial;

  unclip_session_submit (state->session, job, NULL, on_preview_done, data);
}

static gchar *
source_text (RunState *state)
{
  gint x, y, w, h;

  if (state->proc != UNCLIP_PROC_VARIATIONS && state->proc != UNCLIP_PROC_TEXT_DIFF)
    return NULL;

  if (! state->drawable)
    return g_strdup (_("No layer is selected."));

  if (gimp_drawable_mask_intersect (state->drawable, &x, &y, &w, &h) &&
      (w != gimp_drawable_get_width (state->drawable) ||
       h != gimp_drawable_get_height (state->drawable)))
    /* TRANSLATORS: the source of a variation: layer name, selection size */
    return g_strdup_printf (_("Source: the selection in “%s” (%d × %d pixels)"),
                            gimp_item_get_name (GIMP_ITEM (state->drawable)), w, h);

  /* TRANSLATORS: the source of a variation: layer name, size */
  return g_strdup_printf (_("Source: layer “%s” (%d × %d pixels)"),
                          gimp_item_get_name (GIMP_ITEM (state->drawable)),
                          gimp_drawable_get_width (state->drawable),
                          gimp_drawable_get_height (state->drawable));
}

static GimpValueArray *
run_interactive (RunState *state)
{
  static const UnclipDialogKind kinds[] =
  {
    [UNCLIP_PROC_TEXT_TO_IMAGE] = UNCLIP_DIALOG_TEXT_TO_IMAGE,
    [UNCLIP_PROC_VARIATIONS]    = UNCLIP_DIALOG_VARIATIONS,
    [UNCLIP_PROC_INTERPOLATE]   = UNCLIP_DIALOG_INTERPOLATE,
    [UNCLIP_PROC_TEXT_DIFF]     = UNCLIP_DIALOG_TEXT_DIFF,
  };
  UnclipDialogCallbacks callbacks =
  {
    .generate    = dialog_generate,
    .stop        = dialog_stop,
    .check_model = dialog_check_model,
    .preview     = dialog_preview,
  };
  GimpValueArray *values;
  gchar          *text;

  gimp_ui_init (PLUG_IN_BINARY);

  /* Interpolation: a sensible start layer when none is set yet. */
  if (state->proc == UNCLIP_PROC_INTERPOLATE && state->drawable &&
      GIMP_IS_LAYER (state->drawable))
    {
      GimpLayer *start = NULL;

      g_object_get (state->config, "start-layer", &start, NULL);
      if (! start)
        g_object_set (state->config, "start-layer", state->drawable, NULL);
      g_clear_object (&start);
    }

  state->session = unclip_session_new ();

  text = source_text (state);
  state->dialog = unclip_dialog_new (state->procedure, state->config, kinds[state->proc],
                                     state->image, text, &callbacks, state);
  g_free (text);

  unclip_session_submit (state->session, unclip_job_new (UNCLIP_JOB_DEVICES), NULL,
                         on_devices, state);

  unclip_dialog_run (state->dialog);

  /* Closing stops a run in flight; wait for the worker before the dialog goes. */
  unclip_session_free (state->session);
  state->session = NULL;
  progress_end (state);

  gtk_widget_destroy (state->dialog);
  state->dialog = NULL;

  if (state->n_runs == 0)
    return gimp_procedure_new_return_values (state->procedure, GIMP_PDB_CANCEL, NULL);

  values = gimp_procedure_new_return_values (state->procedure, GIMP_PDB_SUCCESS, NULL);
  GIMP_VALUES_SET_IMAGE (values, 1, state->result_image);
  GIMP_VALUES_SET_CORE_OBJECT_ARRAY (values, 2, state->result_layers);
  GIMP_VALUES_SET_INT (values, 3, (gint) state->result_seed);

  return values;
}

static GimpValueArray *
unclip_run (GimpProcedure        *procedure,
            GimpRunMode           run_mode,
            GimpImage            *image,
            GimpDrawable        **drawables,
            GimpProcedureConfig  *config,
            gpointer              run_data)
{
  RunState        state;
  GimpValueArray *values;

  gegl_init (NULL, NULL);

  memset (&state, 0, sizeof state);
  state.procedure = procedure;
  state.config    = config;
  state.proc      = GPOINTER_TO_INT (run_data);
  state.run_mode  = run_mode;
  state.image     = image;
  state.drawable  = (drawables && drawables[0]) ? drawables[0] : NULL;

  if ((state.proc == UNCLIP_PROC_VARIATIONS || state.proc == UNCLIP_PROC_TEXT_DIFF) &&
      (! image || ! state.drawable))
    {
      GError *error = g_error_new_literal (UNCLIP_PLUG_ERROR, UNCLIP_PLUG_ERROR_ARGUMENT,
                                           _("Select one layer of an image first."));

      return gimp_procedure_new_return_values (procedure, GIMP_PDB_CALLING_ERROR, error);
    }

  if (run_mode == GIMP_RUN_INTERACTIVE)
    values = run_interactive (&state);
  else
    values = run_once (&state);

  if (state.session)
    unclip_session_free (state.session);
  if (state.have_params)
    unclip_params_clear (&state.params);
  g_free (state.result_layers);

  return values;
}
