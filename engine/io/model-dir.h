/* A model folder in the diffusers layout.
 *
 *     <root>/model_index.json      {"_class_name": "UnCLIPPipeline", "prior": ["diffusers",
 *                                   "PriorTransformer"], ...}
 *     <root>/<component>/config.json | scheduler_config.json | preprocessor_config.json
 *     <root>/<component>/model.safetensors | diffusion_pytorch_model.safetensors
 *
 * unclip__model_dir_open() reads model_index.json and lists its components (keys not starting
 * with "_" whose value is a [library, class] pair of strings; [null, null] means "not present"
 * and is skipped). Component names containing "/", "\\", "..", a NUL or starting with "." are
 * rejected at open (UNCLIP_E_MODEL), so a model_index.json cannot send the engine outside the
 * folder by name. Component folders may be symlinks (hub cache snapshots link to blobs).
 *
 * Lookup errors are UNCLIP_E_MODEL and say what is missing and where it would be:
 *     "no prior/ in /path/model: text to image needs it"
 *     "/path/model/decoder: no diffusion_pytorch_model.safetensors or model.safetensors"
 *     "/path/model/decoder: only diffusion_pytorch_model.bin (a PyTorch pickle); convert ..."
 *
 * Paths returned through char ** are new strings the caller frees with unclip__free().
 */
#ifndef UNCLIP_IO_MODEL_DIR_H
#define UNCLIP_IO_MODEL_DIR_H

#include "core/error.h"
#include "io/json.h"

#include <stdbool.h>
#include <stdint.h>

struct unclip_model_dir;

struct unclip_component {
    const char *name;       /* e.g. "decoder"; owned by the model dir */
    const char *library;    /* e.g. "diffusers", "transformers", "unclip" */
    const char *class_name; /* e.g. "UNet2DConditionModel" */
};

/* Opens <path>/model_index.json. Errors: UNCLIP_E_MODEL (no folder, no model_index.json, bad
 * component name), UNCLIP_E_FORMAT (malformed JSON or entries), UNCLIP_E_NOMEM. */
unclip_status unclip__model_dir_open(const char *path, struct unclip_model_dir **out,
                                     struct unclip_err *err);
void unclip__model_dir_free(struct unclip_model_dir *d); /* NULL is a no-op */

/* Root folder as given (owned). */
const char *unclip__model_dir_path(const struct unclip_model_dir *d);
/* "_class_name" of model_index.json, or NULL. Owned. */
const char *unclip__model_dir_class(const struct unclip_model_dir *d);
/* The parsed model_index.json (owned). */
const struct unclip_json *unclip__model_dir_index(const struct unclip_model_dir *d);

int32_t unclip__model_dir_count(const struct unclip_model_dir *d);
const struct unclip_component *unclip__model_dir_at(const struct unclip_model_dir *d, int32_t i);
/* NULL when model_index.json does not list `name` (or lists it as [null, null]). */
const struct unclip_component *unclip__model_dir_find(const struct unclip_model_dir *d,
                                                      const char *name);

/* The component is listed AND its folder exists. needed_for (may be NULL) completes the
 * message: "no prior/ in /path/model: text to image needs it". */
unclip_status unclip__model_dir_require(const struct unclip_model_dir *d, const char *name,
                                        const char *needed_for, struct unclip_err *err);
/* Convenience: listed and folder present (no message). */
bool unclip__model_dir_has(const struct unclip_model_dir *d, const char *name);

/* <root>/<name> (requires as above). */
unclip_status unclip__model_dir_folder(const struct unclip_model_dir *d, const char *name,
                                       char **out, struct unclip_err *err);
/* <root>/<name>/<file>, which must exist as a regular file (after following links). `file`
 * must be a plain file name (no "/" or ".."). */
unclip_status unclip__model_dir_file(const struct unclip_model_dir *d, const char *name,
                                     const char *file, char **out, struct unclip_err *err);
/* The component's config: config.json, then scheduler_config.json, then
 * preprocessor_config.json. */
unclip_status unclip__model_dir_config_path(const struct unclip_model_dir *d, const char *name,
                                            char **out, struct unclip_err *err);
/* Loads the config with display name "<name>/<file>" (e.g. "decoder/config.json"). */
unclip_status unclip__model_dir_config(const struct unclip_model_dir *d, const char *name,
                                       struct unclip_json **out, struct unclip_err *err);
/* The weight file: diffusion_pytorch_model.safetensors, model.safetensors, then their
 * .fp16.safetensors variants. When only a .bin/.ckpt/.pt exists the error says to convert it. */
unclip_status unclip__model_dir_weights_path(const struct unclip_model_dir *d, const char *name,
                                             char **out, struct unclip_err *err);

/* Checks a name is usable as one path component (see above). */
bool unclip__model_dir_name_ok(const char *name);

/* Resolves one file path the way the lookups above do: follows real symlinks and "link stubs"
 * (a small text file holding a relative link target, which is what git writes for a symlink
 * with core.symlinks=false; the goldens' variations folder is stored that way). *out is a new
 * path of an existing regular file (the path itself when it is no stub). UNCLIP_E_MODEL when
 * it does not exist ("<path>: not found"), UNCLIP_E_IO when it is not a regular file.
 * For readers given a folder rather than a model dir (e.g. a tokenizer folder). */
unclip_status unclip__model_file_resolve(const char *path, char **out, struct unclip_err *err);

#endif
