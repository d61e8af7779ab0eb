/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-engine.h: the one place where the plug-in calls the engine's pipelines. Runs on the
 * session's worker thread (no GIMP, no GTK).
 */

#ifndef __UNCLIP_ENGINE_H__
#define __UNCLIP_ENGINE_H__

#include "unclip-session.h"

/* Runs job->kind (text to image, variations, interpolation, text diff, preview) on `model`
 * with job->run (callbacks already set). On success job->images / job->n_images hold the
 * results (engine-owned pixels). On failure the context's last error has the detail, unless
 * the function put its own message in job->detail. */
unclip_status unclip_engine_run (struct unclip_model *model,
                                 UnclipJob           *job);

#endif /* __UNCLIP_ENGINE_H__ */
