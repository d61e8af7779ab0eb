/* gimp-unclip: the dialogs of the GIMP 3 plug-in.
 *
 * unclip-dialog.c: one GimpProcedureDialog per procedure, with the widgets GIMP makes for the
 * arguments, plus what GIMP has no widget for: the device list, the model folder's state,
 * progress, Stop, and the interpolation preview.
 *
 * UNCLIP_UI_SCREENSHOT_DIR=DIR (documentation and tests): once the dialog has settled
 * (devices listed, model checked, the interpolation preview made; after one run too when
 * UNCLIP_UI_SCREENSHOT_GENERATE=1), it saves a picture of itself to DIR/plugin-KIND.png
 * (KIND: text-to-image, variations, interpolate, text-diff) and closes. When the file
 * DIR/plugin-KIND.stop exists, it saves DIR/plugin-KIND-running.png at the run's first
 * progress report, presses Stop, and saves DIR/plugin-KIND-stopped.png once the run has
 * ended. The interpolation preview's own pixels, at the size the engine made them, go to
 * DIR/plugin-interpolate-preview.png each time a preview arrives (the tests check its size).
 */

#include <string.h>

#include <glib/gi18n-lib.h>

#include "unclip-dialog.h"


#define RESPONSE_STOP      2
#define PREVIEW_SIZE       128    /* on screen, any decoder size scaled to it    */
#define PREVIEW_DELAY_MS   400    /* after the last slider move                  */
#define SCREENSHOT_WAIT_MS 400    /* after settling, for the last redraw         */
#define SCREENSHOT_MAX_S   300    /* give up waiting for a run after this        */

typedef struct
{
  GtkWidget             *dialog;
  GimpProcedureConfig   *config;
  UnclipDialogKind       kind;
  UnclipDialogCallbacks  callbacks;
  gpointer               user_data;

  GtkWidget             *device_combo;
  GtkWidget             *model_icon;
  GtkWidget             *model_label;
  GtkWidget             *progress;
  GtkWidget             *message;
  GtkWidget             *generate_button;
  GtkWidget             *stop_button;
  GtkWidget             *preview_image;
  GtkWidget             *preview_label;
  GtkWidget             *preview_toggle;
  GtkWidget             *end_layer_row[2];   /* interpolation: shown for a layer end  */
  GtkWidget             *end_prompt_row[2];  /* ... and for a prompt end              */
  GimpImage             *image;

  gboolean               running;
  gboolean               preview_pending;
  gboolean               devices_known;
  gboolean               model_checked;
  gboolean               updating_devices;
  guint                  check_idle;
  guint                  preview_timeout;

  gchar                 *screenshot;         /* file, or NULL             */
  gboolean               screenshot_run;     /* generate first            */
  gboolean               screenshot_stop;    /* ... and stop it at once   */
  gboolean               stop_sent;
  gboolean               screenshot_started; /* the run was started       */
  gboolean               screenshot_done;    /* the run has finished      */
  gboolean               closed;             /* no screenshot any more    */
  guint                  screenshot_timeout;
  guint                  screenshot_give_up;
} UnclipDialog;


static UnclipDialog *
get_priv (GtkWidget *dialog)
{
  return g_object_get_data (G_OBJECT (dialog), "unclip-dialog");
}

static void
priv_free (gpointer data)
{
  UnclipDialog *priv = data;

  if (priv->check_idle)
    g_source_remove (priv->check_idle);
  if (priv->preview_timeout)
    g_source_remove (priv->preview_timeout);
  if (priv->screenshot_timeout)
    g_source_remove (priv->screenshot_timeout);
  if (priv->screenshot_give_up)
    g_source_remove (priv->screenshot_give_up);
  g_free (priv->screenshot);
  g_free (priv);
}


/*  Screenshots (documentation, tests)  */

static void
save_picture (UnclipDialog *priv,
              const gchar  *file)
{
  GdkWindow *window = gtk_widget_get_window (priv->dialog);
  GError    *error  = NULL;
  GdkPixbuf *pixbuf;

  if (! window)
    return;

  pixbuf = gdk_pixbuf_get_from_window (window, 0, 0,
                                       gdk_window_get_width (window),
                                       gdk_window_get_height (window));
  if (! pixbuf || ! gdk_pixbuf_save (pixbuf, file, "png", &error, NULL))
    g_printerr ("unclip: screenshot %s failed: %s\n", file,
                error ? error->message : "no pixels");
  g_clear_error (&error);
  g_clear_object (&pixbuf);
}

static gboolean
take_screenshot (gpointer data)
{
  UnclipDialog *priv = data;

  priv->screenshot_timeout = 0;
  save_picture (priv, priv->screenshot);
  gtk_dialog_response (GTK_DIALOG (priv->dialog), GTK_RESPONSE_CANCEL);

  return G_SOURCE_REMOVE;
}

/* Stop mode: a picture of the run in progress, then Stop. */
static gboolean
shoot_running_then_stop (gpointer data)
{
  UnclipDialog *priv = data;
  gchar        *file;

  priv->screenshot_timeout = 0;
  file = g_strdup (priv->screenshot);
  strcpy (file + strlen (file) - strlen ("-stopped.png"), "-running.png");
  save_picture (priv, file);
  g_free (file);

  if (priv->running)
    gtk_dialog_response (GTK_DIALOG (priv->dialog), RESPONSE_STOP);

  return G_SOURCE_REMOVE;
}

/* Called whenever something the picture depends on arrives. */
static void
screenshot_maybe (UnclipDialog *priv)
{
  if (! priv->screenshot || priv->closed)
    return;
  if (! priv->devices_known || ! priv->model_checked || priv->running ||
      priv->preview_pending)
    return;

  if (priv->screenshot_run && ! priv->screenshot_started)
    {
      priv->screenshot_started = TRUE;
      gtk_dialog_response (GTK_DIALOG (priv->dialog), GTK_RESPONSE_OK);
      return;
    }
  if (priv->screenshot_run && ! priv->screenshot_done)
    return;

  if (priv->screenshot_timeout)
    g_source_remove (priv->screenshot_timeout);
  priv->screenshot_timeout = g_timeout_add (SCREENSHOT_WAIT_MS, take_screenshot, priv);
}

static gboolean
screenshot_give_up (gpointer data)
{
  UnclipDialog *priv = data;

  priv->screenshot_give_up = 0;
  if (priv->screenshot_timeout)
    g_source_remove (priv->screenshot_timeout);
  g_printerr ("unclip: dialog did not settle in %d s; screenshot taken as is\n",
              SCREENSHOT_MAX_S);
  take_screenshot (priv);

  return G_SOURCE_REMOVE;
}


/*  Model folder and device  */

static gboolean
check_idle (gpointer data)
{
  UnclipDialog *priv = data;

  priv->check_idle = 0;
  if (priv->callbacks.check_model)
    priv->callbacks.check_model (priv->user_data);

  return G_SOURCE_REMOVE;
}

static void
queue_check (UnclipDialog *priv)
{
  priv->model_checked = FALSE;
  if (! priv->check_idle)
    priv->check_idle = g_idle_add (check_idle, priv);
}

static void
on_model_or_device_notify (GObject      *config,
                           GParamSpec   *pspec,
                           UnclipDialog *priv)
{
  queue_check (priv);
}

static void
on_device_changed (GtkComboBox  *combo,
                   UnclipDialog *priv)
{
  const gchar *id = gtk_combo_box_get_active_id (combo);

  if (priv->updating_devices || ! id)
    return;

  g_object_set (priv->config, "device", id, NULL);
}

static GtkWidget *
make_model_frame (UnclipDialog        *priv,
                  GimpProcedureDialog *dialog)
{
  GtkWidget *vbox;
  GtkWidget *hbox;
  GtkWidget *label;
  GtkWidget *widget;
  GtkWidget *frame;

  vbox = gimp_procedure_dialog_fill_box (dialog, "model-box", "model-folder", NULL);
  gtk_box_set_spacing (GTK_BOX (vbox), 4);

  /* Device list: the plug-in fills it in once the worker has asked Vulkan. */
  hbox = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  label = gtk_label_new_with_mnemonic (_("De_vice"));
  gtk_label_set_xalign (GTK_LABEL (label), 0.0);
  gtk_box_pack_start (GTK_BOX (hbox), label, FALSE, FALSE, 0);
  priv->device_combo = gtk_combo_box_text_new ();
  gtk_label_set_mnemonic_widget (GTK_LABEL (label), priv->device_combo);
  gtk_combo_box_text_append (GTK_COMBO_BOX_TEXT (priv->device_combo), "",
                             _("Looking for devices…"));
  gtk_combo_box_set_active_id (GTK_COMBO_BOX (priv->device_combo), "");
  gtk_widget_set_hexpand (priv->device_combo, TRUE);
  gimp_help_set_help_data (priv->device_combo,
                           _("The Vulkan device that runs the model; “Automatic” takes the "
                             "fastest one found"), NULL);
  gtk_box_pack_start (GTK_BOX (hbox), priv->device_combo, TRUE, TRUE, 0);
  g_signal_connect (priv->device_combo, "changed", G_CALLBACK (on_device_changed), priv);
  gtk_box_pack_start (GTK_BOX (vbox), hbox, FALSE, FALSE, 0);
  gtk_widget_show_all (hbox);

  /* What the folder holds, or what it lacks. */
  hbox = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  priv->model_icon = gtk_image_new_from_icon_name (GIMP_ICON_DIALOG_INFORMATION,
                                                   GTK_ICON_SIZE_BUTTON);
  gtk_widget_set_valign (priv->model_icon, GTK_ALIGN_START);
  gtk_box_pack_start (GTK_BOX (hbox), priv->model_icon, FALSE, FALSE, 0);
  priv->model_label = gtk_label_new (_("Checking the model folder…"));
  gtk_label_set_xalign (GTK_LABEL (priv->model_label), 0.0);
  gtk_label_set_line_wrap (GTK_LABEL (priv->model_label), TRUE);
  gtk_label_set_max_width_chars (GTK_LABEL (priv->model_label), 60);
  gtk_label_set_selectable (GTK_LABEL (priv->model_label), TRUE);
  gtk_box_pack_start (GTK_BOX (hbox), priv->model_label, TRUE, TRUE, 0);
  gtk_box_pack_start (GTK_BOX (vbox), hbox, FALSE, FALSE, 0);
  gtk_widget_show_all (hbox);

  widget = gimp_procedure_dialog_get_label (dialog, "model-title", _("Model"), FALSE,
                                            FALSE);
  (void) widget;
  frame = gimp_procedure_dialog_fill_frame (dialog, "model-frame", "model-title", FALSE,
                                            "model-box");

  return frame;
}


/*  Sections shared by the four dialogs  */

static void
make_seed_row (GimpProcedureDialog *dialog)
{
  GtkWidget *box;

  box = gimp_procedure_dialog_fill_box (dialog, "seed-box", "seed", "random-seed", NULL);
  gtk_orientable_set_orientation (GTK_ORIENTABLE (box), GTK_ORIENTATION_HORIZONTAL);
  gtk_box_set_spacing (GTK_BOX (box), 12);
}

static void
on_quality_notify (GObject      *config,
                   GParamSpec   *pspec,
                   UnclipDialog *priv)
{
  GimpProcedureDialog *dialog = GIMP_PROCEDURE_DIALOG (priv->dialog);
  gchar               *quality = NULL;
  gboolean             custom;
  GtkWidget           *box;

  g_object_get (config, "quality", &quality, NULL);
  custom = ! g_strcmp0 (quality, "custom");
  g_free (quality);

  box = gimp_procedure_dialog_get_widget (dialog, "advanced-box", G_TYPE_NONE);
  if (box)
    gtk_widget_set_sensitive (box, custom);
}

static void
make_advanced (UnclipDialog        *priv,
               GimpProcedureDialog *dialog,
               gboolean             has_prior)
{
  GtkWidget *expander;

  gimp_procedure_dialog_get_scale_entry (dialog, "decoder-guidance", 1.0);
  if (has_prior)
    {
      gimp_procedure_dialog_get_scale_entry (dialog, "prior-guidance", 1.0);
      gimp_procedure_dialog_fill_box (dialog, "advanced-box", "prior-steps", "decoder-steps",
                                      "super-res-steps", "prior-guidance",
                                      "decoder-guidance", NULL);
    }
  else
    {
      gimp_procedure_dialog_fill_box (dialog, "advanced-box", "decoder-steps",
                                      "super-res-steps", "decoder-guidance", NULL);
    }

  gimp_procedure_dialog_get_label (dialog, "advanced-title",
                                   _("Advanced (used when Quality is Custom)"), FALSE, FALSE);
  expander = gimp_procedure_dialog_fill_expander (dialog, "advanced-expander",
                                                  "advanced-title", FALSE, "advanced-box");
  gtk_expander_set_expanded (GTK_EXPANDER (expander), FALSE);

  g_signal_connect (priv->config, "notify::quality", G_CALLBACK (on_quality_notify), priv);
  on_quality_notify (G_OBJECT (priv->config), NULL, priv);
}

static GtkWidget *
make_prompt_view (GimpProcedureDialog *dialog,
                  const gchar         *property,
                  const gchar         *frame_id,
                  const gchar         *title_id,
                  const gchar         *title)
{
  GtkWidget *view;
  GtkWidget *scrolled;
  GtkWidget *frame;

  view = gimp_procedure_dialog_get_widget (dialog, property, GTK_TYPE_TEXT_VIEW);
  gtk_text_view_set_wrap_mode (GTK_TEXT_VIEW (view), GTK_WRAP_WORD_CHAR);
  gtk_text_view_set_accepts_tab (GTK_TEXT_VIEW (view), FALSE);

  scrolled = gtk_scrolled_window_new (NULL, NULL);
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scrolled), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_shadow_type (GTK_SCROLLED_WINDOW (scrolled), GTK_SHADOW_IN);
  gtk_widget_set_size_request (scrolled, 380, 64);
  gtk_container_add (GTK_CONTAINER (scrolled), view);
  gtk_widget_show (view);

  frame = gimp_frame_new (title);
  gtk_container_add (GTK_CONTAINER (frame), scrolled);
  gtk_widget_show (scrolled);
  (void) frame_id;
  (void) title_id;

  return frame;
}

static GtkWidget *
make_status_area (UnclipDialog *priv)
{
  GtkWidget *vbox = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);

  priv->progress = gtk_progress_bar_new ();
  gtk_progress_bar_set_show_text (GTK_PROGRESS_BAR (priv->progress), TRUE);
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (priv->progress), _("Ready"));
  gtk_progress_bar_set_ellipsize (GTK_PROGRESS_BAR (priv->progress), PANGO_ELLIPSIZE_END);
  gtk_box_pack_start (GTK_BOX (vbox), priv->progress, FALSE, FALSE, 0);

  priv->message = gtk_label_new (NULL);
  gtk_label_set_xalign (GTK_LABEL (priv->message), 0.0);
  gtk_label_set_line_wrap (GTK_LABEL (priv->message), TRUE);
  gtk_label_set_max_width_chars (GTK_LABEL (priv->message), 70);
  gtk_label_set_selectable (GTK_LABEL (priv->message), TRUE);
  gtk_box_pack_start (GTK_BOX (vbox), priv->message, FALSE, FALSE, 0);

  gtk_widget_show_all (vbox);
  gtk_widget_hide (priv->message);

  return vbox;
}


/*  Interpolation  */

static void
on_end_type_notify (GObject      *config,
                    GParamSpec   *pspec,
                    UnclipDialog *priv)
{
  const gchar *props[2] = { "start-type", "end-type" };
  gint         i;

  for (i = 0; i < 2; i++)
    {
      gchar    *type = NULL;
      gboolean  is_layer;

      g_object_get (config, props[i], &type, NULL);
      is_layer = ! g_strcmp0 (type, "layer");
      g_free (type);

      if (priv->end_layer_row[i])
        gtk_widget_set_visible (priv->end_layer_row[i], is_layer);
      if (priv->end_prompt_row[i])
        gtk_widget_set_visible (priv->end_prompt_row[i], ! is_layer);
    }
}

static gboolean
preview_timeout (gpointer data)
{
  UnclipDialog *priv = data;

  priv->preview_timeout = 0;
  gtk_label_set_text (GTK_LABEL (priv->preview_label), _("Decoding the preview…"));
  if (priv->callbacks.preview)
    priv->callbacks.preview (priv->user_data);

  return G_SOURCE_REMOVE;
}

static void
queue_preview (UnclipDialog *priv)
{
  if (! priv->preview_toggle ||
      ! gtk_toggle_button_get_active (GTK_TOGGLE_BUTTON (priv->preview_toggle)))
    return;

  if (priv->preview_timeout)
    g_source_remove (priv->preview_timeout);
  priv->preview_timeout = g_timeout_add (PREVIEW_DELAY_MS, preview_timeout, priv);
  priv->preview_pending = TRUE;
}

static void
on_preview_input_notify (GObject      *config,
                         GParamSpec   *pspec,
                         UnclipDialog *priv)
{
  queue_preview (priv);
}

static void
on_preview_toggled (GtkToggleButton *toggle,
                    UnclipDialog    *priv)
{
  if (gtk_toggle_button_get_active (toggle))
    queue_preview (priv);
  else
    gtk_label_set_text (GTK_LABEL (priv->preview_label), _("Preview off"));
}

static GtkWidget *
make_preview (UnclipDialog *priv)
{
  GtkWidget *vbox = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
  GtkWidget *frame;

  priv->preview_toggle = gtk_check_button_new_with_mnemonic (_("Live pre_view"));
  gimp_help_set_help_data (priv->preview_toggle,
                           _("Decode the position at the decoder's own small size (shown "
                             "under the picture) whenever a setting changes (no upscaling: "
                             "quick, but rough)"), NULL);
  gtk_box_pack_start (GTK_BOX (vbox), priv->preview_toggle, FALSE, FALSE, 0);
  g_signal_connect (priv->preview_toggle, "toggled", G_CALLBACK (on_preview_toggled), priv);

  frame = gtk_frame_new (NULL);
  gtk_frame_set_shadow_type (GTK_FRAME (frame), GTK_SHADOW_IN);
  gtk_widget_set_halign (frame, GTK_ALIGN_CENTER);
  priv->preview_image = gtk_image_new ();
  gtk_widget_set_size_request (priv->preview_image, PREVIEW_SIZE, PREVIEW_SIZE);
  gtk_container_add (GTK_CONTAINER (frame), priv->preview_image);
  gtk_box_pack_start (GTK_BOX (vbox), frame, FALSE, FALSE, 0);

  priv->preview_label = gtk_label_new (_("Preview off"));
  gtk_label_set_line_wrap (GTK_LABEL (priv->preview_label), TRUE);
  gtk_label_set_max_width_chars (GTK_LABEL (priv->preview_label), 20);
  gtk_label_set_justify (GTK_LABEL (priv->preview_label), GTK_JUSTIFY_CENTER);
  gtk_box_pack_start (GTK_BOX (vbox), priv->preview_label, FALSE, FALSE, 0);

  gtk_widget_show_all (vbox);

  return vbox;
}

/* A row "Label  [widget]" for widgets GIMP makes without a label (entries, combos). */
static GtkWidget *
labeled_row (const gchar *mnemonic,
             GtkWidget   *widget)
{
  GtkWidget *hbox  = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  GtkWidget *label = gtk_label_new_with_mnemonic (mnemonic);

  gtk_label_set_xalign (GTK_LABEL (label), 0.0);
  gtk_label_set_mnemonic_widget (GTK_LABEL (label), widget);
  gtk_box_pack_start (GTK_BOX (hbox), label, FALSE, FALSE, 0);
  gtk_widget_set_hexpand (widget, TRUE);
  gtk_box_pack_start (GTK_BOX (hbox), widget, TRUE, TRUE, 0);
  gtk_widget_show_all (hbox);

  return hbox;
}

static const gchar *
nick_of (GimpProcedureConfig *config,
         const gchar         *property)
{
  GParamSpec *pspec = g_object_class_find_property (G_OBJECT_GET_CLASS (config), property);

  return pspec ? g_param_spec_get_nick (pspec) : property;
}

/* Layer ends: a combo of the image's layers, kept in step with the layer property. */
static gboolean
layer_of_image (GimpImage *image,
                GimpItem  *item,
                gpointer   data)
{
  return data == NULL || image == data;
}

static void
on_layer_combo_changed (GtkWidget           *combo,
                        GimpProcedureConfig *config)
{
  const gchar *property = g_object_get_data (G_OBJECT (combo), "unclip-property");
  gint         id       = -1;

  if (gimp_int_combo_box_get_active (GIMP_INT_COMBO_BOX (combo), &id) && id > 0)
    g_object_set (config, property, gimp_layer_get_by_id (id), NULL);
}

static GtkWidget *
make_layer_combo (UnclipDialog *priv,
                  const gchar  *property)
{
  GtkWidget *combo = gimp_layer_combo_box_new (layer_of_image, priv->image, NULL);
  GimpLayer *layer = NULL;

  g_object_get (priv->config, property, &layer, NULL);
  if (layer)
    gimp_int_combo_box_set_active (GIMP_INT_COMBO_BOX (combo),
                                   gimp_item_get_id (GIMP_ITEM (layer)));
  g_clear_object (&layer);

  g_object_set_data_full (G_OBJECT (combo), "unclip-property", g_strdup (property), g_free);
  g_signal_connect (combo, "changed", G_CALLBACK (on_layer_combo_changed), priv->config);
  /* The combo may have picked a layer by itself: let the property know. */
  on_layer_combo_changed (combo, priv->config);

  return combo;
}

static void
make_end (UnclipDialog        *priv,
          GimpProcedureDialog *dialog,
          gint                 i,
          const gchar         *title)
{
  const gchar *which  = i == 0 ? "start" : "end";
  gchar       *type   = g_strdup_printf ("%s-type", which);
  gchar       *layer  = g_strdup_printf ("%s-layer", which);
  gchar       *prompt = g_strdup_printf ("%s-prompt", which);
  gchar       *box_id = g_strdup_printf ("%s-box", which);
  gchar       *frame  = g_strdup_printf ("%s-frame", which);
  gchar       *label  = g_strdup_printf ("%s-title", which);
  GtkWidget   *box;
  GtkWidget   *entry;

  box = gimp_procedure_dialog_fill_box (dialog, box_id, type, NULL);

  priv->end_layer_row[i] = labeled_row (_(nick_of (priv->config, layer)),
                                        make_layer_combo (priv, layer));
  gtk_box_pack_start (GTK_BOX (box), priv->end_layer_row[i], FALSE, FALSE, 0);

  entry = gimp_procedure_dialog_get_widget (dialog, prompt, GTK_TYPE_ENTRY);
  priv->end_prompt_row[i] = labeled_row (_(nick_of (priv->config, prompt)), entry);
  gtk_box_pack_start (GTK_BOX (box), priv->end_prompt_row[i], FALSE, FALSE, 0);

  gimp_procedure_dialog_get_label (dialog, label, title, FALSE, FALSE);
  gimp_procedure_dialog_fill_frame (dialog, frame, label, FALSE, box_id);

  g_free (type);
  g_free (layer);
  g_free (prompt);
  g_free (box_id);
  g_free (frame);
  g_free (label);
}


/*  Buttons  */

static void
on_response (GtkDialog    *dialog,
             gint          response,
             UnclipDialog *priv)
{
  switch (response)
    {
    case GTK_RESPONSE_OK:
      /* Generate: keep the dialog open. */
      g_signal_stop_emission_by_name (dialog, "response");
      if (! priv->running && priv->callbacks.generate)
        priv->callbacks.generate (priv->user_data);
      break;

    case RESPONSE_STOP:
      g_signal_stop_emission_by_name (dialog, "response");
      if (priv->running && priv->callbacks.stop)
        {
          gtk_progress_bar_set_text (GTK_PROGRESS_BAR (priv->progress), _("Stopping…"));
          priv->callbacks.stop (priv->user_data);
        }
      break;

    default:
      /* Close, Escape, the window's close button: stop what runs; the caller waits. */
      if (priv->running && priv->callbacks.stop)
        priv->callbacks.stop (priv->user_data);
      break;
    }
}


/*  Public functions  */

GtkWidget *
unclip_dialog_new (GimpProcedure               *procedure,
                   GimpProcedureConfig         *config,
                   UnclipDialogKind             kind,
                   GimpImage                   *image,
                   const gchar                 *source_text,
                   const UnclipDialogCallbacks *callbacks,
                   gpointer                     user_data)
{
  static const gchar *titles[] =
  {
    [UNCLIP_DIALOG_TEXT_TO_IMAGE] = N_("unCLIP: Text to Image"),
    [UNCLIP_DIALOG_VARIATIONS]    = N_("unCLIP: Variations"),
    [UNCLIP_DIALOG_INTERPOLATE]   = N_("unCLIP: Interpolate"),
    [UNCLIP_DIALOG_TEXT_DIFF]     = N_("unCLIP: Text Diff"),
  };
  GimpProcedureDialog *dialog;
  UnclipDialog        *priv;
  GtkWidget           *content;
  GtkWidget           *main_box;
  GtkWidget           *left;
  GtkWidget           *widget;
  GtkWidget           *button;
  GtkWidget           *action_area;
  const gchar         *screenshot;

  dialog = GIMP_PROCEDURE_DIALOG (gimp_procedure_dialog_new (procedure, config,
                                                             _(titles[kind])));
  priv = g_new0 (UnclipDialog, 1);
  priv->dialog    = GTK_WIDGET (dialog);
  priv->config    = config;
  priv->kind      = kind;
  priv->callbacks = *callbacks;
  priv->user_data = user_data;
  priv->image     = image;
  g_object_set_data_full (G_OBJECT (dialog), "unclip-dialog", priv, priv_free);

  /* Buttons: [Reset] ... [Close] [Stop] [Generate]. */
  gimp_procedure_dialog_set_ok_label (dialog, kind == UNCLIP_DIALOG_INTERPOLATE
                                              ? _("_Apply") : _("_Generate"));
  priv->generate_button = gtk_dialog_get_widget_for_response (GTK_DIALOG (dialog),
                                                              GTK_RESPONSE_OK);
  button = gtk_dialog_get_widget_for_response (GTK_DIALOG (dialog), GTK_RESPONSE_CANCEL);
  if (button)
    gtk_button_set_label (GTK_BUTTON (button), _("_Close"));
  priv->stop_button = gtk_dialog_add_button (GTK_DIALOG (dialog), _("S_top"), RESPONSE_STOP);
  gimp_help_set_help_data (priv->stop_button,
                           _("Stop the run; the image stays as it was"), NULL);
  gtk_widget_set_sensitive (priv->stop_button, FALSE);
  action_area = gtk_widget_get_parent (priv->generate_button);
  if (GTK_IS_BOX (action_area) && gtk_widget_get_parent (priv->stop_button) == action_area)
    {
      gint pos = 0;

      gtk_container_child_get (GTK_CONTAINER (action_area), priv->generate_button,
                               "position", &pos, NULL);
      gtk_box_reorder_child (GTK_BOX (action_area), priv->stop_button, pos);
    }
  g_signal_connect (dialog, "response", G_CALLBACK (on_response), priv);

  content = gtk_dialog_get_content_area (GTK_DIALOG (dialog));

  if (source_text)
    {
      widget = gtk_label_new (source_text);
      gtk_label_set_xalign (GTK_LABEL (widget), 0.0);
      gtk_label_set_line_wrap (GTK_LABEL (widget), TRUE);
      gtk_box_pack_start (GTK_BOX (content), widget, FALSE, FALSE, 0);
      gtk_widget_show (widget);
    }

  main_box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
  left     = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_box_pack_start (GTK_BOX (main_box), left, TRUE, TRUE, 0);

  switch (kind)
    {
    case UNCLIP_DIALOG_TEXT_TO_IMAGE:
      widget = make_prompt_view (dialog, "prompt", "prompt-frame", "prompt-title",
                                 _("Prompt: what the image should show"));
      gtk_box_pack_start (GTK_BOX (left), widget, FALSE, FALSE, 0);
      gtk_widget_show (widget);
      break;

    case UNCLIP_DIALOG_VARIATIONS:
      break;

    case UNCLIP_DIALOG_INTERPOLATE:
      make_end (priv, dialog, 0, _("Start"));
      make_end (priv, dialog, 1, _("End"));
      gimp_procedure_dialog_get_scale_entry (dialog, "position", 1.0);
      widget = gimp_procedure_dialog_fill_box (dialog, "ends-box", "start-frame",
                                               "end-frame", "position", "frames", NULL);
      gtk_box_pack_start (GTK_BOX (left), widget, FALSE, FALSE, 0);
      gtk_widget_show (widget);
      break;

    case UNCLIP_DIALOG_TEXT_DIFF:
      widget = gimp_procedure_dialog_get_widget (dialog, "source-prompt", GTK_TYPE_ENTRY);
      widget = labeled_row (_(nick_of (config, "source-prompt")), widget);
      gtk_box_pack_start (GTK_BOX (left), widget, FALSE, FALSE, 0);
      widget = make_prompt_view (dialog, "prompt", "target-frame", "target-title",
                                 _("Change towards: what the layer should become"));
      gtk_box_pack_start (GTK_BOX (left), widget, FALSE, FALSE, 0);
      gtk_widget_show (widget);
      widget = gimp_procedure_dialog_get_scale_entry (dialog, "amount", 1.0);
      gtk_box_pack_start (GTK_BOX (left), widget, FALSE, FALSE, 0);
      gtk_widget_show (widget);
      break;
    }

  make_seed_row (dialog);
  if (kind == UNCLIP_DIALOG_INTERPOLATE || kind == UNCLIP_DIALOG_TEXT_DIFF)
    widget = gimp_procedure_dialog_fill_box (dialog, "settings-box", "seed-box", "quality",
                                             "placement", NULL);
  else
    widget = gimp_procedure_dialog_fill_box (dialog, "settings-box", "seed-box",
                                             "num-images", "quality", "placement", NULL);
  gtk_box_pack_start (GTK_BOX (left), widget, FALSE, FALSE, 0);
  gtk_widget_show (widget);

  make_advanced (priv, dialog, kind == UNCLIP_DIALOG_TEXT_TO_IMAGE ||
                               kind == UNCLIP_DIALOG_INTERPOLATE);
  widget = gimp_procedure_dialog_get_widget (dialog, "advanced-expander", G_TYPE_NONE);
  gtk_box_pack_start (GTK_BOX (left), widget, FALSE, FALSE, 0);
  gtk_widget_show (widget);

  widget = make_model_frame (priv, dialog);
  gtk_box_pack_start (GTK_BOX (left), widget, FALSE, FALSE, 0);
  gtk_widget_show (widget);

  if (kind == UNCLIP_DIALOG_INTERPOLATE)
    {
      widget = make_preview (priv);
      gtk_box_pack_start (GTK_BOX (main_box), widget, FALSE, FALSE, 0);

      g_signal_connect (config, "notify::start-type", G_CALLBACK (on_end_type_notify), priv);
      g_signal_connect (config, "notify::end-type", G_CALLBACK (on_end_type_notify), priv);
      g_signal_connect (config, "notify::position", G_CALLBACK (on_preview_input_notify),
                        priv);
      g_signal_connect (config, "notify::start-layer", G_CALLBACK (on_preview_input_notify),
                        priv);
      g_signal_connect (config, "notify::end-layer", G_CALLBACK (on_preview_input_notify),
                        priv);
      g_signal_connect (config, "notify::start-prompt",
                        G_CALLBACK (on_preview_input_notify), priv);
      g_signal_connect (config, "notify::end-prompt", G_CALLBACK (on_preview_input_notify),
                        priv);
      g_signal_connect (config, "notify::seed", G_CALLBACK (on_preview_input_notify), priv);
      g_signal_connect (config, "notify::frames", G_CALLBACK (on_preview_input_notify), priv);
    }

  gtk_box_pack_start (GTK_BOX (left), make_status_area (priv), FALSE, FALSE, 0);

  gtk_box_pack_start (GTK_BOX (content), main_box, TRUE, TRUE, 0);
  gtk_widget_show_all (main_box);
  gtk_widget_hide (priv->message);

  if (kind == UNCLIP_DIALOG_INTERPOLATE)
    {
      on_end_type_notify (G_OBJECT (config), NULL, priv);
    }

  g_signal_connect (config, "notify::model-folder", G_CALLBACK (on_model_or_device_notify),
                    priv);
  g_signal_connect (config, "notify::device", G_CALLBACK (on_model_or_device_notify), priv);
  if (kind == UNCLIP_DIALOG_INTERPOLATE)
    {
      g_signal_connect (config, "notify::start-type",
                        G_CALLBACK (on_model_or_device_notify), priv);
      g_signal_connect (config, "notify::end-type", G_CALLBACK (on_model_or_device_notify),
                        priv);
    }
  queue_check (priv);

  screenshot = g_getenv ("UNCLIP_UI_SCREENSHOT_DIR");
  if (screenshot && *screenshot)
    {
      static const gchar *names[] =
      {
        [UNCLIP_DIALOG_TEXT_TO_IMAGE] = "plugin-text-to-image",
        [UNCLIP_DIALOG_VARIATIONS]    = "plugin-variations",
        [UNCLIP_DIALOG_INTERPOLATE]   = "plugin-interpolate",
        [UNCLIP_DIALOG_TEXT_DIFF]     = "plugin-text-diff",
      };
      gchar *base = g_build_filename (screenshot, names[kind], NULL);
      gchar *stop = g_strconcat (base, ".stop", NULL);

      priv->screenshot_run  = ! g_strcmp0 (g_getenv ("UNCLIP_UI_SCREENSHOT_GENERATE"), "1");
      priv->screenshot_stop = g_file_test (stop, G_FILE_TEST_EXISTS);
      if (priv->screenshot_stop)
        priv->screenshot_run = TRUE;
      priv->screenshot = g_strconcat (base, priv->screenshot_stop ? "-stopped.png" : ".png",
                                      NULL);
      g_free (stop);
      g_free (base);
      priv->screenshot_give_up = g_timeout_add_seconds (SCREENSHOT_MAX_S,
                                                        screenshot_give_up, priv);
      /* The picture shows the preview too. */
      if (priv->preview_toggle)
        gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (priv->preview_toggle), TRUE);
    }

  return GTK_WIDGET (dialog);
}

void
unclip_dialog_run (GtkWidget *dialog)
{
  UnclipDialog *priv = get_priv (dialog);

  gtk_widget_show (dialog);

  /* OK (Generate) and Stop are handled in on_response and do not end the run loop. */
  gimp_procedure_dialog_run (GIMP_PROCEDURE_DIALOG (dialog));

  /* No screenshot after the user (or the test) closed the dialog. */
  priv->closed = TRUE;
  if (priv->screenshot_timeout)
    g_source_remove (priv->screenshot_timeout);
  priv->screenshot_timeout = 0;
}

void
unclip_dialog_set_devices (GtkWidget    *dialog,
                           const gchar **names,
                           const gchar **labels,
                           gint          n,
                           gint          default_index,
                           const gchar  *error)
{
  UnclipDialog *priv  = get_priv (dialog);
  GtkComboBoxText *combo = GTK_COMBO_BOX_TEXT (priv->device_combo);
  gchar        *current = NULL;
  gchar        *automatic;
  gboolean      found = FALSE;
  gint          i;

  g_object_get (priv->config, "device", &current, NULL);

  priv->updating_devices = TRUE;
  gtk_combo_box_text_remove_all (combo);

  if (default_index >= 0 && default_index < n)
    /* TRANSLATORS: device list entry; %s is the device the engine picks */
    automatic = g_strdup_printf (_("Automatic (%s)"), names[default_index]);
  else if (error)
    automatic = g_strdup (_("Automatic (no device found)"));
  else
    automatic = g_strdup (_("Automatic (no usable device)"));
  gtk_combo_box_text_append (combo, "", automatic);
  g_free (automatic);

  for (i = 0; i < n; i++)
    {
      gtk_combo_box_text_append (combo, names[i], labels[i]);
      if (current && ! strcmp (current, names[i]))
        found = TRUE;
    }

  /* Keep a device name that scripts or earlier runs set, even when it is absent now. */
  if (current && *current && ! found)
    {
      /* TRANSLATORS: a device name that is set but was not found */
      gchar *label = g_strdup_printf (_("%s (not found)"), current);

      gtk_combo_box_text_append (combo, current, label);
      g_free (label);
    }

  gtk_combo_box_set_active_id (GTK_COMBO_BOX (combo), current ? current : "");
  priv->updating_devices = FALSE;

  if (error)
    gimp_help_set_help_data (priv->device_combo, error, NULL);

  g_free (current);

  priv->devices_known = TRUE;
  screenshot_maybe (priv);
}

void
unclip_dialog_set_model_status (GtkWidget   *dialog,
                                gboolean     ok,
                                const gchar *text)
{
  UnclipDialog *priv = get_priv (dialog);

  gtk_image_set_from_icon_name (GTK_IMAGE (priv->model_icon),
                                ok ? GIMP_ICON_DIALOG_INFORMATION : GIMP_ICON_DIALOG_WARNING,
                                GTK_ICON_SIZE_BUTTON);
  gtk_label_set_text (GTK_LABEL (priv->model_label), text);

  if (priv->check_idle == 0 && ! g_str_has_suffix (text, "…"))
    {
      priv->model_checked = TRUE;
      screenshot_maybe (priv);
    }
}

void
unclip_dialog_set_running (GtkWidget *dialog,
                           gboolean   running)
{
  UnclipDialog *priv = get_priv (dialog);

  priv->running = running;
  gtk_widget_set_sensitive (priv->generate_button, ! running);
  gtk_widget_set_sensitive (priv->stop_button, running);

  if (running)
    {
      gtk_widget_hide (priv->message);
    }
  else
    {
      gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (priv->progress), 0.0);
      gtk_progress_bar_set_text (GTK_PROGRESS_BAR (priv->progress), _("Ready"));

      if (priv->screenshot_started)
        priv->screenshot_done = TRUE;
      screenshot_maybe (priv);
    }
}

void
unclip_dialog_set_progress (GtkWidget   *dialog,
                            const gchar *text,
                            gdouble      fraction)
{
  UnclipDialog *priv = get_priv (dialog);

  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (priv->progress), fraction);
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (priv->progress), text);

  /* Stop mode: once a step has been reported, photograph the running dialog (after its
   * redraw), then press Stop. */
  if (priv->screenshot_stop && priv->running && ! priv->stop_sent && fraction > 0.0)
    {
      priv->stop_sent = TRUE;
      priv->screenshot_timeout = g_timeout_add (SCREENSHOT_WAIT_MS, shoot_running_then_stop,
                                                priv);
    }
}

void
unclip_dialog_set_message (GtkWidget   *dialog,
                           const gchar *text,
                           gboolean     is_error)
{
  UnclipDialog *priv = get_priv (dialog);
  gchar        *markup;

  if (is_error)
    markup = g_markup_printf_escaped ("<b>%s</b>", text);
  else
    markup = g_markup_escape_text (text, -1);

  gtk_label_set_markup (GTK_LABEL (priv->message), markup);
  gtk_widget_show (priv->message);
  g_free (markup);
}

void
unclip_dialog_set_preview (GtkWidget    *dialog,
                           const guchar *pixels,
                           gint          width,
                           gint          height,
                           gint          channels,
                           gint          stride,
                           const gchar  *message)
{
  UnclipDialog *priv = get_priv (dialog);
  GdkPixbuf    *pixbuf;
  GdkPixbuf    *scaled;
  gint          x, y;

  if (! priv->preview_image)
    return;

  priv->preview_pending = FALSE;
  screenshot_maybe (priv);

  if (! pixels || width <= 0 || height <= 0)
    {
      /* The reason goes into the tooltip: the column is narrow, and a failed preview
       * usually fails for the reason the model line already shows. */
      gtk_image_clear (GTK_IMAGE (priv->preview_image));
      gtk_label_set_text (GTK_LABEL (priv->preview_label), _("No preview"));
      gimp_help_set_help_data (priv->preview_label, message, NULL);
      return;
    }
  gimp_help_set_help_data (priv->preview_label, NULL, NULL);

  pixbuf = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, width, height);
  for (y = 0; y < height; y++)
    {
      guchar       *dst = gdk_pixbuf_get_pixels (pixbuf) + y * gdk_pixbuf_get_rowstride (pixbuf);
      const guchar *src = pixels + (gsize) y * stride;

      for (x = 0; x < width; x++, src += channels, dst += 3)
        {
          dst[0] = src[0];
          dst[1] = channels >= 3 ? src[1] : src[0];
          dst[2] = channels >= 3 ? src[2] : src[0];
        }
    }

  if (priv->screenshot)
    {
      gchar *file = g_strdup (priv->screenshot);
      gchar *dot  = strrchr (file, '.');
      gchar *raw;

      /* ".png" or "-stopped.png": cut at the kind's name */
      if (g_str_has_suffix (file, "-stopped.png"))
        dot = file + strlen (file) - strlen ("-stopped.png");
      *dot = '\0';
      raw = g_strconcat (file, "-preview.png", NULL);
      if (! gdk_pixbuf_save (pixbuf, raw, "png", NULL, NULL))
        g_printerr ("unclip: could not save %s\n", raw);
      g_free (raw);
      g_free (file);
    }

  scaled = gdk_pixbuf_scale_simple (pixbuf, PREVIEW_SIZE, PREVIEW_SIZE, GDK_INTERP_NEAREST);
  gtk_image_set_from_pixbuf (GTK_IMAGE (priv->preview_image), scaled);
  /* TRANSLATORS: under the interpolation preview; %d x %d is its size */
  {
    gchar *text = g_strdup_printf (_("Preview, %d × %d pixels"), width, height);

    gtk_label_set_text (GTK_LABEL (priv->preview_label), text);
    g_free (text);
  }
  g_object_unref (scaled);
  g_object_unref (pixbuf);
}
