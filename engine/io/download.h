/* Downloading model files from the Hugging Face hub (or a mirror of it), with libcurl.
 *
 * URLs: <endpoint>/<repo>/resolve/<revision>/<path> for file contents (the hub answers LFS
 * files with a redirect to its CDN, which is followed) and
 * <endpoint>/api/models/<repo>/tree/<revision>?recursive=true for the list of files.
 * endpoint: the caller's, else $UNCLIP_HF_ENDPOINT, else $HF_ENDPOINT, else
 * https://huggingface.co.
 *
 * Verification (chosen: the tree API as the manifest). Before fetching anything the plan asks
 * the hub's tree API of every repository involved for the size and hash of each file it needs:
 * LFS files (weights) list "lfs": {"oid": <SHA-256 of the content>, "size"}, plain git files
 * (configs, tokenizer files) list "oid": <git blob SHA-1> = SHA-1 of "blob <size>\0<content>".
 * So every file, small or large, is checked against a hash the hub publishes, the total size
 * is known before the first byte (progress, time left, free disk space), and a mirror missing
 * a file is reported before anything is written. When the resolve response carries
 * X-Linked-Etag (the hub sends the LFS SHA-256 there), it must agree with the tree.
 *
 * Files are written to "<dest>/<path>.part", resumed with an HTTP Range request after a
 * dropped connection or an interrupted run, hashed when complete, and only then renamed to
 * their final name (after fsync), so a model folder never holds a half-written or unverified
 * file under a name the engine reads. A hash mismatch deletes the .part and fetches the file
 * again (counted as an attempt). A file already in place is hashed and kept when it matches.
 *
 * Hub cache: the hub's own cache (huggingface_hub, diffusers) stores each file of a repository
 * as models--org--name/blobs/<hash>, named by exactly the hashes the tree API lists (SHA-256 for
 * LFS files, the git blob SHA-1 otherwise). A file whose blob is there is hard-linked (or
 * copied) into the .part instead of fetched, then verified like a download; for an extraction,
 * the byte ranges are read from the cached blob of the whole file.
 *
 * Tensor extraction (UNCLIP_DL_TENSORS): for a component that exists only inside a larger
 * safetensors file (the CLIP image encoder inside openai/clip-vit-large-patch14's
 * model.safetensors, a whole CLIPModel), the header is read with range requests, the tensors
 * whose names match are fetched by their byte ranges (adjacent ones merged into one request),
 * and a valid safetensors file of just those tensors is written (our header, same names,
 * dtypes and bytes). The hub publishes no hash of a part of a file, so such a file is checked
 * by structure instead: the remote header must be consistent with the size the tree API lists
 * for the whole file (which ties it to the published SHA-256's version), every range must come
 * back as exactly the bytes asked for (206 with the matching Content-Range), and the result
 * must pass the full safetensors validation. An existing result is kept when its header equals
 * the one the remote file gives and its size is right.
 */
#ifndef UNCLIP_IO_DOWNLOAD_H
#define UNCLIP_IO_DOWNLOAD_H

#include "core/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UNCLIP_HF_DEFAULT_ENDPOINT "https://huggingface.co"

enum unclip_dl_kind {
    UNCLIP_DL_FILE = 0,  /* the whole file, verified against the published hash          */
    UNCLIP_DL_TENSORS,   /* some tensors of a safetensors file (see above)               */
};

/* One file to fetch: a row of a plan table. Strings are static. */
struct unclip_dl_item {
    const char *repo;       /* "kakaobrain/karlo-v1-alpha"                               */
    const char *revision;   /* "main" (a branch, tag, commit or "refs/pr/N")             */
    const char *path;       /* path inside the repository                                */
    const char *dest;       /* path under the destination folder                         */
    enum unclip_dl_kind kind;
    const char *const *prefixes; /* UNCLIP_DL_TENSORS: tensor name prefixes to keep (an entry
                                    ending without '.' must match the whole name)        */
    const char *group;      /* what the file belongs to, for --only and messages:
                               "text-to-image" or "image-encoder"                        */
};

/* A model folder's component entry for the model_index.json the plan writes. */
struct unclip_dl_component {
    const char *name, *library, *class_name;
    const char *group;
};

/* A named download plan ("karlo"): files, components, the pipeline class. */
struct unclip_dl_plan {
    const char *name;                 /* "karlo"                                        */
    const char *folder;               /* default folder name, "karlo-v1-alpha"          */
    const char *class_name;           /* model_index.json "_class_name"                 */
    const struct unclip_dl_item *items;
    int32_t n_items;
    const struct unclip_dl_component *components;
    int32_t n_components;
};

/* The plan called `name` ("karlo"), or NULL. */
const struct unclip_dl_plan *unclip__dl_plan(const char *name);
/* Plans for the usage text: i-th plan or NULL. */
const struct unclip_dl_plan *unclip__dl_plan_at(int32_t i);

enum unclip_dl_event {
    UNCLIP_DL_EV_PROGRESS = 0, /* bytes arrived                                          */
    UNCLIP_DL_EV_FILE_START,   /* a file begins (file_done > 0 when resuming)            */
    UNCLIP_DL_EV_FILE_DONE,    /* a file is verified and in place                        */
    UNCLIP_DL_EV_FILE_KEPT,    /* a file was already there and verified                  */
};

struct unclip_dl_progress {
    enum unclip_dl_event event;
    const char *file;          /* dest path of the current file                          */
    int32_t index, count;      /* 0-based file index, number of files                   */
    uint64_t file_done, file_total; /* bytes of this file (on disk, so resumed bytes count) */
    uint64_t done, total;      /* bytes of all files still to fetch when the run started  */
    double bytes_per_s;        /* recent transfer speed (0 until known)                  */
    double eta_s;              /* seconds left at that speed (-1 until known)            */
    double elapsed_s;
};

struct unclip_dl_opts {
    const char *endpoint;      /* NULL: $UNCLIP_HF_ENDPOINT, $HF_ENDPOINT, the hub       */
    int32_t attempts;          /* per file, >= 1 (default 6)                             */
    int32_t retry_delay_ms;    /* first wait between attempts, doubled each time up to 30 s
                                  (default 1000)                                         */
    int32_t connect_timeout_s; /* default 30                                             */
    int32_t stall_timeout_s;   /* a transfer slower than 1 byte/s for this long is dropped
                                  and resumed (default 60)                               */
    const char *only_group;    /* NULL: every item; else only items of this group        */
    bool check_space;          /* refuse to start when the disk lacks room (default on)  */
    bool use_hub_cache;        /* take files the Hugging Face hub cache already holds
                                  (blobs/<published hash>) instead of fetching them
                                  (default on; see unclip__hub_cache_dir)                */
    /* Called from the downloading thread; progress at most ~10 times a second. */
    void (*progress)(const struct unclip_dl_progress *p, void *user);
    /* Notes worth a line: resumes, retries, mismatches. */
    void (*note)(const char *msg, void *user);
    /* true: stop soon (UNCLIP_E_CANCELLED; .part files stay and are resumed next time). */
    bool (*cancel)(void *user);
    void *user;
};

struct unclip_dl_opts unclip__dl_opts_default(void);

/* The endpoint in use (opts->endpoint or the environment or the hub). Static or borrowed. */
const char *unclip__dl_endpoint(const struct unclip_dl_opts *opts);

/* Fetches every item of `plan` into `dest` (created when missing) and writes its
 * model_index.json (components of the groups fetched). Errors: UNCLIP_E_IO (network, HTTP,
 * disk; the message names the URL or file and what the server said), UNCLIP_E_FORMAT (a
 * verification that failed every attempt; a remote header that is not safetensors),
 * UNCLIP_E_MODEL (a file the server does not have), UNCLIP_E_CANCELLED, UNCLIP_E_NOMEM. */
unclip_status unclip__dl_run(const struct unclip_dl_plan *plan, const char *dest,
                             const struct unclip_dl_opts *opts, struct unclip_err *err);

/* ---- helpers (also used by `unclip convert`) ---------------------------------------------- */

/* One tensor of a safetensors file being laid out. */
struct unclip_st_entry {
    const char *name;          /* borrowed                                               */
    const char *dtype;         /* safetensors dtype name ("F32"), borrowed               */
    int32_t ndim;
    int64_t shape[8];
    uint64_t nbytes;
    uint64_t offset;           /* out: offset of its data in the data buffer             */
    int64_t order;             /* in: tie-break of the layout (e.g. source offset)       */
};

/* Orders `e` by decreasing element size then `order` (so every tensor is aligned to its
 * element size), sets each offset, and builds the file's first bytes: 8-byte little-endian
 * header length, the JSON header (with `metadata` pairs, NULL-terminated key/value list or
 * NULL), padded with spaces to a multiple of 8. *header is a new buffer of *header_len bytes
 * (unclip__free). The entries array is reordered. */
unclip_status unclip__st_layout(struct unclip_st_entry *e, int32_t n, const char *const *metadata,
                                uint8_t **header, uint64_t *header_len, struct unclip_err *err);

/* Lowercase hex SHA-256 (want_sha256) or git blob SHA-1 of a file's content. hex gets 65
 * bytes. UNCLIP_E_IO when unreadable. */
unclip_status unclip__dl_hash_file(const char *path, bool want_sha256, char hex[65],
                                   struct unclip_err *err);

/* fsync a file by path and rename it (and fsync the folder). */
unclip_status unclip__dl_commit_file(const char *part, const char *final, struct unclip_err *err);

#endif
