/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-params.h: the procedures' arguments (names, ranges, defaults), reading them from a
 * GimpProcedureConfig, quality presets, layer names and the parameter parasite.
 */

#ifndef __UNCLIP_PARAMS_H__
#define __UNCLIP_PARAMS_H__

#include <libgimp/gimp.h>

#include "unclip/unclip.h"

#define PLUG_IN_BINARY       "unclip"
#define PLUG_IN_ROLE         "gimp-unclip"
#define PROC_TEXT_TO_IMAGE   "plug-in-unclip-text-to-image"
#define PROC_VARIATIONS      "plug-in-unclip-variations"
#define PROC_INTERPOLATE     "plug-in-unclip-interpolate"
#define PROC_TEXT_DIFF       "plug-in-unclip-text-diff"

/* Name of the parasite attached to every layer the plug-in makes: the parameters that made
 * it, as GKeyFile text (group "unclip"). */
#define UNCLIP_PARASITE      "gimp-unclip-parameters"

typedef enum
{
  UNCLIP_PROC_TEXT_TO_IMAGE,
  UNCLIP_PROC_VARIATIONS,
  UNCLIP_PROC_INTERPOLATE,
  UNCLIP_PROC_TEXT_DIFF
} UnclipProc;

typedef enum
{
  UNCLIP_QUALITY_FAST,
  UNCLIP_QUALITY_DEFAULT,
  UNCLIP_QUALITY_CUSTOM
} UnclipQuality;

typedef enum
{
  UNCLIP_PLACE_NATIVE,       /* native size, centred on the selection / source / image */
  UNCLIP_PLACE_IMAGE,        /* scaled to fit the image                              */
  UNCLIP_PLACE_SELECTION     /* scaled to fit the selection (else source / image)    */
} UnclipPlacement;

typedef struct
{
  UnclipProc       proc;
  gchar           *prompt;           /* text to image; text diff: the target       */
  gchar           *source_prompt;    /* text diff: what the layer shows now         */
  guint32          seed;             /* the seed used (drawn when random_seed)      */
  gboolean         random_seed;
  gint             num_images;
  UnclipQuality    quality;
  gint             prior_steps;      /* after the preset is applied                 */
  gint             decoder_steps;
  gint             sr_steps;
  gdouble          prior_guidance;
  gdouble          decoder_guidance;
  gchar           *device;           /* "" = automatic                              */
  gchar           *model_dir;        /* NULL: the default model (engine's search)   */
  UnclipPlacement  placement;
  /* interpolation */
  gboolean         end_is_layer[2];
  GimpLayer       *end_layer[2];     /* owned reference or NULL                     */
  gchar           *end_prompt[2];
  gdouble          position;
  gint             frames;
  /* text diff */
  gdouble          amount;
} UnclipParams;

/* Adds the arguments of `proc` to `procedure` (after the image procedure's own). */
void     unclip_params_add_arguments   (GimpProcedure        *procedure,
                                        UnclipProc            proc);

/* Reads every argument; draws the seed when random-seed is set. */
void     unclip_params_from_config     (UnclipParams         *params,
                                        UnclipProc            proc,
                                        GimpProcedureConfig  *config);
void     unclip_params_clear           (UnclipParams         *params);

/* The engine's run parameters for these settings (callbacks left empty). */
struct unclip_run_params
         unclip_params_run             (const UnclipParams   *params);

/* The UNCLIP_FEATURE_* bits a run of these settings needs. */
guint32  unclip_params_needs           (const UnclipParams   *params);

/* Interpolation: the positions of the frames (g_free). */
gdouble *unclip_params_positions       (const UnclipParams   *params,
                                        gint                 *n_positions);

/* Checks what the engine cannot (empty prompt, missing endpoint layer...). */
gboolean unclip_params_validate        (const UnclipParams   *params,
                                        GError              **error);

/* Name of result `index` of `n` (frame position for interpolations). */
gchar   *unclip_params_layer_name      (const UnclipParams   *params,
                                        const gchar          *source_name,
                                        gint                  index,
                                        gint                  n,
                                        gdouble               position);

/* The parasite text for result `index` (g_free); model_dir is the folder the run used. */
gchar   *unclip_params_to_parasite     (const UnclipParams   *params,
                                        const gchar          *model_dir,
                                        const gchar          *device_used,
                                        gint                  index,
                                        gint                  n,
                                        gdouble               position);

#endif /* __UNCLIP_PARAMS_H__ */
