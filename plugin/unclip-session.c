/* gimp-unclip: the GIMP 3 plug-in.
 *
 * unclip-session.c: the worker thread (see unclip-session.h for the threading contract).
 */

#include "config.h"

#include <string.h>

#include "unclip-engine.h"
#include "unclip-session.h"


struct _UnclipSession
{
  GThread            *thread;
  GMutex              lock;
  GCond               cond;
  GQueue              queue;        /* UnclipJob *, under lock                    */
  UnclipJob          *current;      /* the job the worker runs, under lock        */
  gboolean            quit;         /* under lock                                 */
  gint                busy;         /* main thread: submitted, done not delivered */
  GMainContext       *main_context;

  /* Worker thread only. */
  struct unclip_ctx   *ctx;
  gchar               *ctx_device;
  struct unclip_model *model;
  gchar               *model_dir;
};

/* A job's reference count and its coalesced progress live beside it, private. */
typedef struct
{
  UnclipJob               job;
  gint                    ref_count;
  GMutex                  progress_lock;
  struct unclip_progress  progress;
  gchar                   stage[64];
  gboolean                progress_pending;
} UnclipJobPrivate;

#define JOB_PRIVATE(j) ((UnclipJobPrivate *) (j))


static void
endpoint_clear (UnclipEndpoint *end)
{
  g_free (end->prompt);
  g_free (end->image.pixels);
  memset (end, 0, sizeof *end);
}

UnclipJob *
unclip_job_new (UnclipJobKind kind)
{
  UnclipJobPrivate *priv = g_new0 (UnclipJobPrivate, 1);

  priv->ref_count = 1;
  g_mutex_init (&priv->progress_lock);

  priv->job.kind           = kind;
  priv->job.run            = unclip_run_params_default ();
  priv->job.status         = UNCLIP_OK;
  priv->job.default_device = -1;

  return &priv->job;
}

static UnclipJob *
job_ref (UnclipJob *job)
{
  g_atomic_int_inc (&JOB_PRIVATE (job)->ref_count);

  return job;
}

void
unclip_job_free (UnclipJob *job)
{
  UnclipJobPrivate *priv;
  gint              i;

  if (! job)
    return;

  priv = JOB_PRIVATE (job);
  if (! g_atomic_int_dec_and_test (&priv->ref_count))
    return;

  g_free (job->model_dir);
  g_free (job->gimp_dir);
  g_free (job->device);
  g_free (job->prompt);
  g_free (job->prompt2);
  g_free (job->source.pixels);
  endpoint_clear (&job->ends[0]);
  endpoint_clear (&job->ends[1]);
  g_free (job->positions);
  g_free (job->detail);
  for (i = 0; i < job->n_images; i++)
    unclip_image_clear (&job->images[i]);
  unclip_free (job->images);
  g_free (job->device_used);
  g_free (job->devices);
  g_mutex_clear (&priv->progress_lock);
  g_free (priv);
}


/*  Main-thread side of progress and completion  */

static gboolean
progress_idle (gpointer data)
{
  UnclipJob              *job  = data;
  UnclipJobPrivate       *priv = JOB_PRIVATE (job);
  struct unclip_progress  p;
  gchar                   stage[64];

  g_mutex_lock (&priv->progress_lock);
  p = priv->progress;
  g_strlcpy (stage, priv->stage, sizeof stage);
  p.stage = stage;
  priv->progress_pending = FALSE;
  g_mutex_unlock (&priv->progress_lock);

  if (job->progress_func && ! g_atomic_int_get (&job->cancelled))
    job->progress_func (job, &p, job->user_data);

  unclip_job_free (job);

  return G_SOURCE_REMOVE;
}

static gboolean
done_idle (gpointer data)
{
  UnclipJob     *job     = data;
  UnclipSession *session = job->session;

  session->busy--;

  if (job->done_func)
    job->done_func (job, job->user_data);

  unclip_job_free (job);

  return G_SOURCE_REMOVE;
}


/*  Worker thread  */

/* Engine callbacks: they run on the worker thread. */
static bool
job_cancel_cb (void *user_data)
{
  UnclipJob *job = user_data;

  return g_atomic_int_get (&job->cancelled) != 0;
}

static void
job_progress_cb (const struct unclip_progress *p,
                 void                         *user_data)
{
  UnclipJob        *job     = user_data;
  UnclipJobPrivate *priv    = JOB_PRIVATE (job);
  UnclipSession    *session = job->session;
  gboolean          schedule;

  g_mutex_lock (&priv->progress_lock);
  priv->progress = *p;
  g_strlcpy (priv->stage, p->stage ? p->stage : "", sizeof priv->stage);
  priv->progress.stage = NULL;
  schedule = ! priv->progress_pending;
  priv->progress_pending = TRUE;
  g_mutex_unlock (&priv->progress_lock);

  if (schedule)
    g_main_context_invoke_full (session->main_context, G_PRIORITY_DEFAULT,
                                progress_idle, job_ref (job), NULL);
}

static void
job_fail (UnclipJob     *job,
          unclip_status  status,
          const gchar   *detail)
{
  job->status = status;
  g_free (job->detail);
  job->detail = g_strdup (detail ? detail : "");
}

static gboolean
ensure_ctx (UnclipSession *session,
            UnclipJob     *job)
{
  const gchar              *device = job->device ? job->device : "";
  struct unclip_ctx_params  params;
  unclip_status             status;
  char                      err[512] = "";

  if (session->ctx && ! g_strcmp0 (session->ctx_device, device))
    return TRUE;

  unclip_model_free (session->model);
  session->model = NULL;
  g_clear_pointer (&session->model_dir, g_free);
  unclip_ctx_free (session->ctx);
  session->ctx = NULL;
  g_clear_pointer (&session->ctx_device, g_free);

  params = unclip_ctx_params_default ();
  if (*device)
    params.device_name = device;

  status = unclip_ctx_new (&params, &session->ctx, err, sizeof err);
  if (status != UNCLIP_OK)
    {
      session->ctx = NULL;
      job_fail (job, status, err);
      return FALSE;
    }

  session->ctx_device = g_strdup (device);

  return TRUE;
}

static gboolean
ensure_model (UnclipSession *session,
              UnclipJob     *job)
{
  unclip_status status;

  if (! job->model_dir || ! *job->model_dir)
    {
      /* The default model: $UNCLIP_MODEL, GIMP's models folder, the installed copy... */
      struct unclip_model_search search = { 0 };
      char                       found[4096];
      char                       err[4096];

      search.gimp_dir = job->gimp_dir;
      search.need     = job->needs;
      status = unclip_model_find (NULL, &search, found, sizeof found, err, sizeof err);
      if (status != UNCLIP_OK)
        {
          job_fail (job, status, err);
          return FALSE;
        }
      g_free (job->model_dir);
      job->model_dir      = g_strdup (found);
      job->model_searched = TRUE;
    }

  if (session->model && ! g_strcmp0 (session->model_dir, job->model_dir))
    return TRUE;

  unclip_model_free (session->model);
  session->model = NULL;
  g_clear_pointer (&session->model_dir, g_free);

  status = unclip_model_open (session->ctx, job->model_dir, &session->model);
  if (status != UNCLIP_OK)
    {
      session->model = NULL;
      job_fail (job, status, unclip_ctx_last_error (session->ctx));
      return FALSE;
    }

  session->model_dir = g_strdup (job->model_dir);

  return TRUE;
}

static void
run_devices (UnclipJob *job)
{
  struct unclip_device_info *list = NULL;
  int32_t                    n    = 0;
  unclip_status              status;
  char                       err[512] = "";

  status = unclip_devices_list (&list, &n, err, sizeof err);
  if (status != UNCLIP_OK)
    {
      job_fail (job, status, err);
      return;
    }

  job->devices        = g_memdup2 (list, sizeof *list * (gsize) MAX (n, 1));
  job->n_devices      = n;
  job->default_device = unclip_device_pick (list, n);
  unclip_free (list);
}

static void
run_job (UnclipSession *session,
         UnclipJob     *job)
{
  if (job->kind == UNCLIP_JOB_DEVICES)
    {
      run_devices (job);
      return;
    }

  if (! ensure_ctx (session, job))
    return;

  job->device_used = g_strdup (unclip_ctx_device (session->ctx)->name);

  if (! ensure_model (session, job))
    return;

  job->features   = unclip_model_features (session->model);
  job->image_size = unclip_model_image_size (session->model);

  if ((job->features & job->needs) != job->needs)
    {
      /* The message naming the missing parts is made on the main thread (unclip-errors.c),
       * from job->features and job->needs. */
      job_fail (job, UNCLIP_E_MODEL, "");
      return;
    }

  if (job->kind == UNCLIP_JOB_CHECK_MODEL)
    return;

  job->run.cancel_cb   = job_cancel_cb;
  job->run.progress_cb = job_progress_cb;
  job->run.user_data   = job;

  job->status = unclip_engine_run (session->model, job);
  if (job->status != UNCLIP_OK)
    {
      if (! job->detail || ! job->detail[0])
        {
          g_free (job->detail);
          job->detail = g_strdup (unclip_ctx_last_error (session->ctx));
        }

      /* A lost device cannot be used again: make the next job start afresh. */
      if (job->status == UNCLIP_E_DEVICE_LOST)
        {
          unclip_model_free (session->model);
          session->model = NULL;
          g_clear_pointer (&session->model_dir, g_free);
          unclip_ctx_free (session->ctx);
          session->ctx = NULL;
          g_clear_pointer (&session->ctx_device, g_free);
        }
    }
}

static gpointer
worker_main (gpointer data)
{
  UnclipSession *session = data;

  while (TRUE)
    {
      UnclipJob *job;

      g_mutex_lock (&session->lock);
      while (g_queue_is_empty (&session->queue) && ! session->quit)
        g_cond_wait (&session->cond, &session->lock);
      job = g_queue_pop_head (&session->queue);
      session->current = job;
      g_mutex_unlock (&session->lock);

      if (! job)
        break;

      if (g_atomic_int_get (&job->cancelled))
        job_fail (job, UNCLIP_E_CANCELLED, "");
      else
        run_job (session, job);

      /* A run that finished just as Stop was pressed still counts as cancelled: the user
       * asked for nothing to be written. */
      if (g_atomic_int_get (&job->cancelled) && job->kind != UNCLIP_JOB_DEVICES &&
          job->kind != UNCLIP_JOB_CHECK_MODEL)
        job_fail (job, UNCLIP_E_CANCELLED, "");

      g_mutex_lock (&session->lock);
      session->current = NULL;
      g_mutex_unlock (&session->lock);

      g_main_context_invoke_full (session->main_context, G_PRIORITY_DEFAULT,
                                  done_idle, job, NULL);
    }

  unclip_model_free (session->model);
  unclip_ctx_free (session->ctx);
  session->model = NULL;
  session->ctx   = NULL;

  return NULL;
}


/*  Public functions (main thread)  */

UnclipSession *
unclip_session_new (void)
{
  UnclipSession *session = g_new0 (UnclipSession, 1);

  g_mutex_init (&session->lock);
  g_cond_init (&session->cond);
  g_queue_init (&session->queue);
  session->main_context = g_main_context_ref (g_main_context_default ());
  session->thread = g_thread_new ("unclip-engine", worker_main, session);

  return session;
}

void
unclip_session_submit (UnclipSession         *session,
                       UnclipJob             *job,
                       UnclipJobProgressFunc  progress_func,
                       UnclipJobDoneFunc      done_func,
                       gpointer               user_data)
{
  job->progress_func = progress_func;
  job->done_func     = done_func;
  job->user_data     = user_data;
  job->session       = session;

  session->busy++;

  g_mutex_lock (&session->lock);
  g_queue_push_tail (&session->queue, job);
  g_cond_signal (&session->cond);
  g_mutex_unlock (&session->lock);
}

void
unclip_session_cancel (UnclipSession *session)
{
  GList *list;

  g_mutex_lock (&session->lock);
  if (session->current)
    g_atomic_int_set (&session->current->cancelled, 1);
  for (list = session->queue.head; list; list = list->next)
    g_atomic_int_set (&((UnclipJob *) list->data)->cancelled, 1);
  g_mutex_unlock (&session->lock);
}

gboolean
unclip_session_is_busy (UnclipSession *session)
{
  return session->busy > 0;
}

void
unclip_session_free (UnclipSession *session)
{
  if (! session)
    return;

  unclip_session_cancel (session);

  g_mutex_lock (&session->lock);
  session->quit = TRUE;
  g_cond_signal (&session->cond);
  g_mutex_unlock (&session->lock);

  g_thread_join (session->thread);

  /* Deliver what the worker finished, so no idle callback outlives the session. */
  while (session->busy > 0)
    g_main_context_iteration (session->main_context, TRUE);

  g_main_context_unref (session->main_context);
  g_queue_clear (&session->queue);
  g_cond_clear (&session->cond);
  g_mutex_clear (&session->lock);
  g_free (session);
}

typedef struct
{
  GMainLoop             *loop;
  UnclipJob             *job;
  UnclipJobProgressFunc  progress_func;
  gpointer               user_data;
} SyncData;

static void
sync_progress (UnclipJob                    *job,
               const struct unclip_progress *progress,
               gpointer                      user_data)
{
  SyncData *sync = user_data;

  if (sync->progress_func)
    sync->progress_func (job, progress, sync->user_data);
}

static void
sync_done (UnclipJob *job,
           gpointer   user_data)
{
  SyncData *sync = user_data;

  sync->job = job_ref (job);
  g_main_loop_quit (sync->loop);
}

UnclipJob *
unclip_session_run_sync (UnclipSession         *session,
                         UnclipJob             *job,
                         UnclipJobProgressFunc  progress_func,
                         gpointer               user_data)
{
  SyncData sync = { NULL, NULL, progress_func, user_data };

  sync.loop = g_main_loop_new (session->main_context, FALSE);

  unclip_session_submit (session, job, sync_progress, sync_done, &sync);

  g_main_loop_run (sync.loop);
  g_main_loop_unref (sync.loop);

  return sync.job;
}
