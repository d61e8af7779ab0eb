/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-errors.h: the plug-in's edge, where an engine status becomes a GError with a message
 * that says what happened and what to do. Nothing else in the plug-in looks at status codes.
 */

#ifndef __UNCLIP_ERRORS_H__
#define __UNCLIP_ERRORS_H__

#include <glib.h>

#include "unclip-session.h"

#define UNCLIP_PLUG_ERROR (unclip_plug_error_quark ())

typedef enum
{
  UNCLIP_PLUG_ERROR_FAILED,      /* the plug-in's own checks (arguments, image state) */
  UNCLIP_PLUG_ERROR_ARGUMENT,
  UNCLIP_PLUG_ERROR_PROMPT,
  UNCLIP_PLUG_ERROR_MODEL,       /* missing, incomplete, corrupt model folder         */
  UNCLIP_PLUG_ERROR_DEVICE,      /* no device, unsupported device, Vulkan failures     */
  UNCLIP_PLUG_ERROR_MEMORY,      /* host or device out of memory                       */
  UNCLIP_PLUG_ERROR_CANCELLED,
  UNCLIP_PLUG_ERROR_INTERNAL
} UnclipPlugErrorCode;

GQuark    unclip_plug_error_quark    (void);

/* NULL when the job succeeded; else a new GError for the user. */
GError  * unclip_error_from_job      (const UnclipJob *job);

/* The component folders (e.g. "prior/, prior_scheduler/") that `needs` requires and that are
 * absent from model_dir, or NULL when none is. */
gchar   * unclip_missing_components  (const gchar     *model_dir,
                                      guint32          needs);

/* What a feature set allows, for messages ("text to image", ...). */
gchar   * unclip_features_describe   (guint32          features);

#endif /* __UNCLIP_ERRORS_H__ */
