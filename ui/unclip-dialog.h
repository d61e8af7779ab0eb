/* gimp-unclip: the dialogs of the GIMP 3 plug-in (GTK 3, GimpProcedureDialog).
 *
 * The dialog edits the procedure's GimpProcedureConfig (so GIMP remembers the last values)
 * and shows what the plug-in tells it: devices, the model folder's state, progress, messages,
 * an interpolation preview. It starts nothing itself: its buttons call the callbacks, which
 * the plug-in implements on top of the engine. It never looks into the plug-in.
 *
 * Generate (Apply for interpolation) can be pressed again and again without closing; Stop
 * asks the run in flight to end; Close ends the dialog (stopping a run in flight).
 *
 * Main thread only.
 */

#ifndef __UNCLIP_DIALOG_H__
#define __UNCLIP_DIALOG_H__

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

typedef enum
{
  UNCLIP_DIALOG_TEXT_TO_IMAGE,
  UNCLIP_DIALOG_VARIATIONS,
  UNCLIP_DIALOG_INTERPOLATE,
  UNCLIP_DIALOG_TEXT_DIFF
} UnclipDialogKind;

typedef struct
{
  void (* generate)    (gpointer user_data);   /* start a run with the config's values  */
  void (* stop)        (gpointer user_data);   /* stop the run in flight                 */
  void (* check_model) (gpointer user_data);   /* model folder or device changed         */
  void (* preview)     (gpointer user_data);   /* interpolation: decode the position     */
} UnclipDialogCallbacks;

/* image: the image the procedure runs on (for the layer choosers), may be NULL.
 * source_text: a line describing the source (variations, text diff), may be NULL. */
GtkWidget * unclip_dialog_new              (GimpProcedure               *procedure,
                                            GimpProcedureConfig         *config,
                                            UnclipDialogKind             kind,
                                            GimpImage                   *image,
                                            const gchar                 *source_text,
                                            const UnclipDialogCallbacks *callbacks,
                                            gpointer                     user_data);

/* Shows the dialog and returns when the user closes it. */
void        unclip_dialog_run              (GtkWidget                   *dialog);

/* The device list: names[i] is what the "device" argument takes, labels[i] what the user
 * reads; default_index is the engine's choice (-1: none usable); error (may be NULL) is
 * shown when the list could not be made. */
void        unclip_dialog_set_devices      (GtkWidget                   *dialog,
                                            const gchar                **names,
                                            const gchar                **labels,
                                            gint                         n,
                                            gint                         default_index,
                                            const gchar                 *error);
void        unclip_dialog_set_model_status (GtkWidget                   *dialog,
                                            gboolean                     ok,
                                            const gchar                 *text);
/* While running: Generate is insensitive and Stop sensitive, and the reverse. */
void        unclip_dialog_set_running      (GtkWidget                   *dialog,
                                            gboolean                     running);
void        unclip_dialog_set_progress     (GtkWidget                   *dialog,
                                            const gchar                 *text,
                                            gdouble                      fraction);
void        unclip_dialog_set_message      (GtkWidget                   *dialog,
                                            const gchar                 *text,
                                            gboolean                     is_error);
/* Interpolation preview: 8-bit pixels (1, 3 or 4 channels), copied; NULL pixels clear the
 * preview and show `message` (may be NULL) instead. */
void        unclip_dialog_set_preview      (GtkWidget                   *dialog,
                                            const guchar                *pixels,
                                            gint                         width,
                                            gint                         height,
                                            gint                         channels,
                                            gint                         stride,
                                            const gchar                 *message);

#endif /* __UNCLIP_DIALOG_H__ */
