/* Finding a model folder by path or by name (behind the public unclip_model_find()).
 *
 * Order, first match wins (a candidate must be a diffusers-layout folder whose model_index.json
 * opens and which offers the features asked for; a candidate that exists but lacks them is
 * noted in the report and the search goes on):
 *
 *   1. name_or_path is an existing folder: that folder (a model folder, a hub cache repo
 *      folder "models--org--name", or its "snapshots/<rev>"). An existing folder that is none
 *      of these is an error: the search does not go on behind the caller's back.
 *   2. name_or_path NULL or "": $UNCLIP_MODEL (a folder or a name) when set, else the default
 *      model's name (UNCLIP_MODEL_DEFAULT_NAME).
 *   3. a name ("karlo", "karlo-v1-alpha", "kakaobrain/karlo-v1-alpha", any "org/name" or
 *      folder name): <gimp_dir>/unclip/models/<folder>, for the name's folder names (see the
 *      alias table in model-search.c: "karlo" -> karlo-v1-alpha);
 *   4. the Hugging Face hub cache: <hub>/models--<org>--<name>/snapshots/<refs/main>, else the
 *      newest snapshot holding a model_index.json; <hub> = $HF_HUB_CACHE, else $HF_HOME/hub,
 *      else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub;
 *   5. only for the default model's name: the shipped copy, $UNCLIP_DATADIR/models/<name>,
 *      then <datadir>/gimp-unclip/models/<name> of the installation, then the source tree's
 *      data/models/<name> (uninstalled builds).
 *
 * A specific name that is nowhere is an error, never a silent switch to the default model.
 * The error lists every place looked at and why each was rejected, and says how to get the
 * model ("unclip download karlo").
 *
 * gimp_dir NULL: $GIMP3_DIRECTORY, else $XDG_CONFIG_HOME/GIMP/3.0, else ~/.config/GIMP/3.0
 * (GIMP 3's own rule; the plug-in passes gimp_directory()).
 */
#ifndef UNCLIP_IO_MODEL_SEARCH_H
#define UNCLIP_IO_MODEL_SEARCH_H

#include "core/error.h"
#include "io/model-dir.h"

#include <stdint.h>

#define UNCLIP_MODEL_DEFAULT_NAME "shapes-v1"

/* A well-known model: the names a user may type, its folder name under the GIMP models
 * folder and its hub repository (NULL when it is not on the hub). */
struct unclip_model_alias {
    const char *name;       /* short name, e.g. "karlo" */
    const char *folder;     /* e.g. "karlo-v1-alpha" */
    const char *repo;       /* e.g. "kakaobrain/karlo-v1-alpha", or NULL */
};

/* The alias whose name, folder or repo equals `name` (case-sensitive), or NULL. */
const struct unclip_model_alias *unclip__model_alias(const char *name);

/* UNCLIP_FEATURE_* bits a model folder offers, from model_index.json and the folders present
 * (the same rule as unclip_model_open()). */
uint32_t unclip__model_dir_features(const struct unclip_model_dir *d);

/* The default places (new strings, free with unclip__free; NULL when out of memory or when
 * no HOME is known). */
char *unclip__gimp_user_dir(void);
char *unclip__hub_cache_dir(void);
/* <gimp_dir>/unclip/models (gimp_dir NULL: the default). */
char *unclip__gimp_models_dir(const char *gimp_dir);

/* The snapshot folder of repo "org/name" in hub cache `hub` (refs/main first, else the newest
 * snapshot with a model_index.json). UNCLIP_E_MODEL when there is none (message says why). */
unclip_status unclip__hub_snapshot(const char *hub, const char *repo, char **out,
                                   struct unclip_err *err);

/* The search above. *out is a new path (free with unclip__free). Errors: UNCLIP_E_MODEL with
 * the report of places looked at, UNCLIP_E_ARG, UNCLIP_E_NOMEM. `need`: UNCLIP_FEATURE_* bits
 * the folder must offer (0: any usable pipeline). */
unclip_status unclip__model_find(const char *name_or_path, const char *gimp_dir, uint32_t need,
                                 char **out, struct unclip_err *err);

#endif
