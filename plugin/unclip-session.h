/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-session.h: one worker thread that owns the engine (Vulkan context and the open model
 * folder) for the lifetime of a plug-in run, and runs jobs on it one at a time.
 *
 * Threads: unclip_session_*() and the callbacks are main-thread only. The worker calls the
 * engine and nothing else: it never touches GIMP or GTK. Progress and completion reach the main
 * thread through the default GMainContext, so the main thread must iterate it (a GMainLoop, or
 * gtk_dialog_run) while a job runs.
 *
 * Errors: a job carries the engine's status and message (detail) back as plain data; the main
 * thread turns them into a GError once, with unclip_error_from_job() (unclip-errors.h).
 */

#ifndef __UNCLIP_SESSION_H__
#define __UNCLIP_SESSION_H__

#include <glib.h>

#include "unclip/unclip.h"


typedef enum
{
  UNCLIP_JOB_DEVICES,        /* list the Vulkan devices                                  */
  UNCLIP_JOB_CHECK_MODEL,    /* open the model folder, report its features               */
  UNCLIP_JOB_TEXT_TO_IMAGE,  /* prompt -> num_images images                              */
  UNCLIP_JOB_VARIATIONS,     /* source image -> num_images images                        */
  UNCLIP_JOB_INTERPOLATE,    /* two endpoints -> one image per position                  */
  UNCLIP_JOB_TEXT_DIFF,      /* source image + text edit -> num_images images            */
  UNCLIP_JOB_PREVIEW         /* interpolation at one position, decoder output only       */
} UnclipJobKind;

/* One end of an interpolation: an image (pixels owned by the job) or a prompt. */
typedef struct
{
  gboolean             is_image;
  gchar               *prompt;
  struct unclip_image  image;
} UnclipEndpoint;

typedef struct _UnclipJob UnclipJob;

/* Called on the main thread with the latest progress; may be coalesced (only the newest
 * report is delivered when the main thread is busy). */
typedef void (* UnclipJobProgressFunc) (UnclipJob                    *job,
                                        const struct unclip_progress *progress,
                                        gpointer                      user_data);
/* Called on the main thread once the job has finished (success, failure or cancel). The
 * session frees the job after the callback returns. */
typedef void (* UnclipJobDoneFunc)     (UnclipJob                    *job,
                                        gpointer                      user_data);

struct _UnclipJob
{
  UnclipJobKind             kind;

  /* Inputs: set on the main thread before unclip_session_submit(), then read-only. */
  gchar                    *model_dir;      /* folder to open; NULL: the default model,
                                               found by unclip_model_find (the worker puts
                                               the folder it found here)                  */
  gchar                    *gimp_dir;       /* GIMP's user folder, for that search         */
  gboolean                  model_searched; /* output: model_dir was found by the search    */
  gchar                    *device;         /* "" or NULL: the engine's choice            */
  guint32                   needs;          /* UNCLIP_FEATURE_* bits the job requires      */
  struct unclip_run_params  run;            /* callbacks are filled in by the session      */
  gchar                    *prompt;         /* text to image; text diff: the target text   */
  gchar                    *prompt2;        /* text diff: what the source shows now        */
  struct unclip_image       source;         /* variations, text diff (pixels owned)        */
  UnclipEndpoint            ends[2];        /* interpolation                               */
  gdouble                  *positions;      /* interpolation: n_positions values in [0, 1] */
  gint                      n_positions;
  gdouble                   amount;         /* text diff: 0 = unchanged .. 1 = full edit   */

  /* Outputs: written by the worker, read on the main thread in the done callback. */
  unclip_status             status;
  gchar                    *detail;         /* the engine's message ("" on success)        */
  struct unclip_image      *images;         /* n_images results, engine-owned pixels       */
  gint                      n_images;
  guint32                   features;       /* CHECK_MODEL: UNCLIP_FEATURE_* of the folder  */
  gint                      image_size;     /* CHECK_MODEL: native output side              */
  gchar                    *device_used;    /* name of the device the job ran on           */
  struct unclip_device_info *devices;       /* DEVICES: the list (g_malloc'ed)             */
  gint                      n_devices;
  gint                      default_device; /* index into devices, -1 when none usable      */

  /* Private to the session. */
  gint                      cancelled;      /* atomic                                      */
  UnclipJobProgressFunc     progress_func;
  UnclipJobDoneFunc         done_func;
  gpointer                  user_data;
  gpointer                  session;
};

typedef struct _UnclipSession UnclipSession;

UnclipSession * unclip_session_new      (void);
/* Cancels what runs, waits for the worker to stop, frees everything. Pending jobs are
 * dropped without their done callback. */
void            unclip_session_free     (UnclipSession          *session);

UnclipJob     * unclip_job_new          (UnclipJobKind           kind);
void            unclip_job_free         (UnclipJob              *job);

/* Queues the job (the session takes ownership). */
void            unclip_session_submit   (UnclipSession          *session,
                                         UnclipJob              *job,
                                         UnclipJobProgressFunc   progress_func,
                                         UnclipJobDoneFunc       done_func,
                                         gpointer                user_data);
/* Asks the running job and every queued one to stop; their done callbacks still come, with
 * UNCLIP_E_CANCELLED unless they had already finished. */
void            unclip_session_cancel   (UnclipSession          *session);
gboolean        unclip_session_is_busy  (UnclipSession          *session);

/* Runs the main loop until the job is done and returns it (the caller frees it with
 * unclip_job_free). For non-interactive runs. */
UnclipJob     * unclip_session_run_sync (UnclipSession          *session,
                                         UnclipJob              *job,
                                         UnclipJobProgressFunc   progress_func,
                                         gpointer                user_data);

#endif /* __UNCLIP_SESSION_H__ */
