/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-engine.c: the plug-in's calls of the engine's pipelines (worker thread only).
 */

#include "config.h"

#include <string.h>

#include "unclip-engine.h"


static void
source_from_image (struct unclip_source      *source,
                   const struct unclip_image *image)
{
  memset (source, 0, sizeof *source);
  source->kind  = UNCLIP_SOURCE_IMAGE;
  source->image = image;
}

static void
source_from_end (struct unclip_source *source,
                 const UnclipEndpoint *end)
{
  memset (source, 0, sizeof *source);
  if (end->is_image)
    {
      source->kind  = UNCLIP_SOURCE_IMAGE;
      source->image = &end->image;
    }
  else
    {
      source->kind   = UNCLIP_SOURCE_PROMPT;
      source->prompt = end->prompt;
    }
}

static void
take_result (UnclipJob            *job,
             struct unclip_result *result)
{
  job->images   = result->images;
  job->n_images = result->n_images;
  memset (result, 0, sizeof *result);
}

static unclip_status
fail_detail (UnclipJob     *job,
             unclip_status  status,
             const gchar   *detail)
{
  g_free (job->detail);
  job->detail = g_strdup (detail);

  return status;
}

/* Frames of an interpolation at job->positions (any positions in 0..1); a preview stops
 * after the decoder (its 64 x 64 output for Karlo, no super-resolution). */
static unclip_status
run_interpolation (struct unclip_model *model,
                   UnclipJob           *job)
{
  struct unclip_source     from, to;
  struct unclip_result     result = { 0 };
  struct unclip_run_params run    = job->run;
  unclip_status            status;
  gint                     n      = job->n_positions;
  gfloat                  *positions;
  gint                     i;

  source_from_end (&from, &job->ends[0]);
  source_from_end (&to, &job->ends[1]);
  run.num_images   = 1;
  run.decoder_only = job->kind == UNCLIP_JOB_PREVIEW;

  positions = g_new (gfloat, n);
  for (i = 0; i < n; i++)
    positions[i] = (gfloat) job->positions[i];
  status = unclip_run_interpolation_at (model, &from, &to, positions, n, &run, &result);
  g_free (positions);
  if (status != UNCLIP_OK)
    return status;

  take_result (job, &result);
  return UNCLIP_OK;
}

unclip_status
unclip_engine_run (struct unclip_model *model,
                   UnclipJob           *job)
{
  struct unclip_source  source;
  struct unclip_result  result = { 0 };
  unclip_status         status;

  switch (job->kind)
    {
    case UNCLIP_JOB_TEXT_TO_IMAGE:
      status = unclip_run_text_to_image (model, job->prompt, &job->run, &result);
      break;

    case UNCLIP_JOB_VARIATIONS:
      source_from_image (&source, &job->source);
      status = unclip_run_variations (model, &source, &job->run, &result);
      break;

    case UNCLIP_JOB_INTERPOLATE:
    case UNCLIP_JOB_PREVIEW:
      return run_interpolation (model, job);

    case UNCLIP_JOB_TEXT_DIFF:
      {
        gfloat amount = (gfloat) job->amount;

        source_from_image (&source, &job->source);
        status = unclip_run_text_diff (model, &source, job->prompt2 ? job->prompt2 : "",
                                       job->prompt, &amount, 1, &job->run, &result);
      }
      break;

    default:
      return fail_detail (job, UNCLIP_E_ARG, "unknown job");
    }

  if (status == UNCLIP_OK)
    take_result (job, &result);

  return status;
}
