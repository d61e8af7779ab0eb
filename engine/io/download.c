/* Hub downloads: plan table, tree API manifest, resumable verified transfers, tensor
 * extraction by byte ranges (see download.h). */
#include "io/download.h"

#include "core/alloc.h"
#include "io/model-search.h"
#include "io/safetensors.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- the plans: the one table of what Karlo needs ------------------------------------------
 *
 * Text to image: every file of kakaobrain/karlo-v1-alpha the pipeline reads (configs,
 * tokenizer, safetensors weights; never the .bin twins). Variations: the image encoder's
 * config and the CLIP preprocessing config from kakaobrain/karlo-v1-alpha-image-variations,
 * whose main branch has the image encoder only as a pickle, so its weights come from the
 * vision half of openai/clip-vit-large-patch14's model.safetensors, the checkpoint the Karlo
 * image encoder was made from (same tensor names under vision_model. and visual_projection).
 * Configs come first: they are small and show at once whether the server has the repos. */
#define KARLO "kakaobrain/karlo-v1-alpha"
#define KARLO_VAR "kakaobrain/karlo-v1-alpha-image-variations"
#define CLIP_L "openai/clip-vit-large-patch14"
#define T2I "text-to-image"
#define IMG "image-encoder"

static const char *const VISION_PREFIXES[] = {"vision_model.", "visual_projection.weight", NULL};

#define KF(path) {KARLO, "main", path, path, UNCLIP_DL_FILE, NULL, T2I}
static const struct unclip_dl_item KARLO_ITEMS[] = {
    KF("tokenizer/vocab.json"),
    KF("tokenizer/merges.txt"),
    KF("tokenizer/special_tokens_map.json"),
    KF("tokenizer/tokenizer_config.json"),
    KF("text_encoder/config.json"),
    KF("prior/config.json"),
    KF("prior_scheduler/scheduler_config.json"),
    KF("text_proj/config.json"),
    KF("decoder/config.json"),
    KF("decoder_scheduler/scheduler_config.json"),
    KF("super_res_first/config.json"),
    KF("super_res_last/config.json"),
    KF("super_res_scheduler/scheduler_config.json"),
    {KARLO_VAR, "main", "feature_extractor/preprocessor_config.json",
     "feature_extractor/preprocessor_config.json", UNCLIP_DL_FILE, NULL, IMG},
    {KARLO_VAR, "main", "image_encoder/config.json", "image_encoder/config.json",
     UNCLIP_DL_FILE, NULL, IMG},
    KF("text_proj/diffusion_pytorch_model.safetensors"),      /*  31.5 MB */
    KF("text_encoder/model.safetensors"),                     /*   495 MB */
    {CLIP_L, "main", "model.safetensors", "image_encoder/model.safetensors", UNCLIP_DL_TENSORS,
     VISION_PREFIXES, IMG},                                   /* 1.22 GB of 1.71 GB */
    KF("super_res_first/diffusion_pytorch_model.safetensors"), /* 2.77 GB */
    KF("super_res_last/diffusion_pytorch_model.safetensors"),  /* 2.77 GB */
    KF("decoder/diffusion_pytorch_model.safetensors"),         /* 3.54 GB */
    KF("prior/diffusion_pytorch_model.safetensors"),           /* 4.09 GB */
};
#undef KF

static const struct unclip_dl_component KARLO_COMPONENTS[] = {
    {"decoder", "diffusers", "UNet2DConditionModel", T2I},
    {"decoder_scheduler", "diffusers", "UnCLIPScheduler", T2I},
    {"feature_extractor", "transformers", "CLIPImageProcessor", IMG},
    {"image_encoder", "transformers", "CLIPVisionModelWithProjection", IMG},
    {"prior", "diffusers", "PriorTransformer", T2I},
    {"prior_scheduler", "diffusers", "UnCLIPScheduler", T2I},
    {"super_res_first", "diffusers", "UNet2DModel", T2I},
    {"super_res_last", "diffusers", "UNet2DModel", T2I},
    {"super_res_scheduler", "diffusers", "UnCLIPScheduler", T2I},
    {"text_encoder", "transformers", "CLIPTextModelWithProjection", T2I},
    {"text_proj", "unclip", "UnCLIPTextProjModel", T2I},
    {"tokenizer", "transformers", "CLIPTokenizer", T2I},
};

#define N_OF(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

static const struct unclip_dl_plan PLANS[] = {
    {"karlo", "karlo-v1-alpha", "UnCLIPPipeline", KARLO_ITEMS, N_OF(KARLO_ITEMS),
     KARLO_COMPONENTS, N_OF(KARLO_COMPONENTS)},
};

const struct unclip_dl_plan *
unclip__dl_plan(const char *name)
{
    for (int32_t i = 0; name && i < N_OF(PLANS); i++)
        if (!strcmp(PLANS[i].name, name) || !strcmp(PLANS[i].folder, name))
            return &PLANS[i];
    return NULL;
}

const struct unclip_dl_plan *
unclip__dl_plan_at(int32_t i)
{
    return i >= 0 && i < N_OF(PLANS) ? &PLANS[i] : NULL;
}

struct unclip_dl_opts
unclip__dl_opts_default(void)
{
    struct unclip_dl_opts o = {
        .attempts = 6,
        .retry_delay_ms = 1000,
        .connect_timeout_s = 30,
        .stall_timeout_s = 60,
        .check_space = true,
        .use_hub_cache = true,
    };
    return o;
}

const char *
unclip__dl_endpoint(const struct unclip_dl_opts *opts)
{
    if (opts && opts->endpoint && *opts->endpoint)
        return opts->endpoint;
    const char *e = getenv("UNCLIP_HF_ENDPOINT");
    if (e && *e)
        return e;
    e = getenv("HF_ENDPOINT");
    if (e && *e)
        return e;
    return UNCLIP_HF_DEFAULT_ENDPOINT;
}

/* ---- small file helpers ---- */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
sleep_ms(int32_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Size of a regular file, -1 when absent. */
static int64_t
file_size(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return -1;
    return (int64_t)sb.st_size;
}

static unclip_status
make_parent(const char *path, struct unclip_err *err)
{
    gchar *dir = g_path_get_dirname(path);
    unclip_status st = UNCLIP_OK;
    if (g_mkdir_with_parents(dir, 0755) != 0)
        st = unclip__fail(err, UNCLIP_E_IO, "%s: cannot create the folder: %s", dir,
                          g_strerror(errno));
    g_free(dir);
    return st;
}

unclip_status
unclip__dl_hash_file(const char *path, bool want_sha256, char hex[65], struct unclip_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return unclip__fail(err, UNCLIP_E_IO, "%s: cannot open: %s", path, g_strerror(errno));
    GChecksum *ck = g_checksum_new(want_sha256 ? G_CHECKSUM_SHA256 : G_CHECKSUM_SHA1);
    if (!want_sha256) {
        /* git's blob id: SHA-1 of "blob <size>\0" + content */
        struct stat sb;
        fstat(fileno(fp), &sb);
        char head[48];
        int n = snprintf(head, sizeof head, "blob %lld", (long long)sb.st_size);
        g_checksum_update(ck, (const guchar *)head, (gssize)n + 1);
    }
    enum { BUF = 1 << 20 };
    guchar *buf = unclip__malloc(BUF);
    if (!buf) {
        fclose(fp);
        g_checksum_free(ck);
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of memory for hashing", path);
    }
    size_t n;
    while ((n = fread(buf, 1, BUF, fp)) > 0)
        g_checksum_update(ck, buf, (gssize)n);
    bool bad = ferror(fp);
    fclose(fp);
    unclip__free(buf);
    if (bad) {
        g_checksum_free(ck);
        return unclip__fail(err, UNCLIP_E_IO, "%s: read error while hashing", path);
    }
    snprintf(hex, 65, "%s", g_checksum_get_string(ck));
    g_checksum_free(ck);
    return UNCLIP_OK;
}

static void
fsync_dir_of(const char *path)
{
    gchar *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    g_free(dir);
}

unclip_status
unclip__dl_commit_file(const char *part, const char *final, struct unclip_err *err)
{
    int fd = open(part, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        unclip_status st = unclip__fail(err, UNCLIP_E_IO, "%s: cannot sync: %s", part,
                                        g_strerror(errno));
        if (fd >= 0)
            close(fd);
        return st;
    }
    close(fd);
    if (rename(part, final) != 0)
        return unclip__fail(err, UNCLIP_E_IO, "cannot rename %s to %s: %s", part, final,
                            g_strerror(errno));
    fsync_dir_of(final);
    return UNCLIP_OK;
}

/* ---- safetensors layout ---- */

static int
entry_cmp(const void *pa, const void *pb)
{
    const struct unclip_st_entry *a = pa, *b = pb;
    /* element size from the dtype's digits: I64/F64 8, F32/I32 4, F16/BF16/I16 2, else 1 */
    const char *da = a->dtype, *db = b->dtype;
    int ea = strstr(da, "64") ? 8 : strstr(da, "32") ? 4 : strstr(da, "16") ? 2 : 1;
    int eb = strstr(db, "64") ? 8 : strstr(db, "32") ? 4 : strstr(db, "16") ? 2 : 1;
    if (ea != eb)
        return eb - ea;
    return (a->order > b->order) - (a->order < b->order);
}

unclip_status
unclip__st_layout(struct unclip_st_entry *e, int32_t n, const char *const *metadata,
                  uint8_t **header, uint64_t *header_len, struct unclip_err *err)
{
    qsort(e, (size_t)n, sizeof *e, entry_cmp);
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    if (metadata && metadata[0]) {
        json_builder_set_member_name(b, "__metadata__");
        json_builder_begin_object(b);
        for (int i = 0; metadata[i] && metadata[i + 1]; i += 2) {
            json_builder_set_member_name(b, metadata[i]);
            json_builder_add_string_value(b, metadata[i + 1]);
        }
        json_builder_end_object(b);
    }
    uint64_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        e[i].offset = off;
        json_builder_set_member_name(b, e[i].name);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "dtype");
        json_builder_add_string_value(b, e[i].dtype);
        json_builder_set_member_name(b, "shape");
        json_builder_begin_array(b);
        for (int32_t k = 0; k < e[i].ndim; k++)
            json_builder_add_int_value(b, e[i].shape[k]);
        json_builder_end_array(b);
        json_builder_set_member_name(b, "data_offsets");
        json_builder_begin_array(b);
        json_builder_add_int_value(b, (gint64)off);
        json_builder_add_int_value(b, (gint64)(off + e[i].nbytes));
        json_builder_end_array(b);
        json_builder_end_object(b);
        off += e[i].nbytes;
    }
    json_builder_end_object(b);
    JsonGenerator *g = json_generator_new();
    JsonNode *root = json_builder_get_root(b);
    json_generator_set_root(g, root);
    gsize jlen = 0;
    gchar *json = json_generator_to_data(g, &jlen);
    json_node_unref(root);
    g_object_unref(g);
    g_object_unref(b);
    uint64_t padded = (jlen + 7) & ~(uint64_t)7;
    uint8_t *h = unclip__malloc(8 + padded);
    if (!h) {
        g_free(json);
        return unclip__fail(err, UNCLIP_E_NOMEM, "safetensors header: out of memory");
    }
    for (int k = 0; k < 8; k++)
        h[k] = (uint8_t)(padded >> (8 * k));
    memcpy(h + 8, json, jlen);
    memset(h + 8 + jlen, ' ', padded - jlen);
    g_free(json);
    *header = h;
    *header_len = 8 + padded;
    return UNCLIP_OK;
}

/* ---- HTTP ---- */

enum sink_kind { SINK_MEM, SINK_FILE };

/* One request's state, shared by the curl callbacks. */
struct xfer {
    struct dl *dl;
    enum sink_kind sink;
    /* request */
    uint64_t range_from;     /* first byte asked for                                 */
    int64_t range_to;        /* last byte asked for (inclusive), -1: to the end       */
    /* response (of the last response in a redirect chain) */
    long status;
    int64_t cr_start, cr_end, cr_total;  /* Content-Range, -1 when absent             */
    int64_t content_length;
    char linked_etag[80];
    char next_link[1024];    /* Link: <...>; rel="next" (tree API pages)              */
    bool body_started;
    /* memory sink */
    GByteArray *mem;
    uint64_t mem_cap;        /* abort when more arrives                               */
    /* file sink */
    FILE *fp;
    uint64_t file_pos;       /* bytes in the file                                    */
    bool write_failed;
    int write_errno;
    bool range_mismatch;
    bool ignored_range;      /* 200 with the whole file to a bounded range request     */
    bool too_much;
    /* error body of an HTTP error, for the message */
    char errbody[200];
    size_t errbody_len;
};

struct dl {
    CURL *curl;
    const struct unclip_dl_opts *o;
    const char *endpoint;
    char curl_err[CURL_ERROR_SIZE];
    /* progress */
    int32_t index, count;
    const char *file;
    uint64_t file_total;
    uint64_t done_before;    /* bytes of the run finished before this file              */
    uint64_t file_base;      /* bytes of this file on disk before the run touched it    */
    uint64_t total;
    double t0, last_report, speed, speed_t, speed_bytes;
    uint64_t run_bytes;      /* bytes received in this run                              */
    bool cancelled;
    char *hub;               /* hub cache folder, NULL when not used                    */
};

static void
note(struct dl *dl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
note(struct dl *dl, const char *fmt, ...)
{
    if (!dl->o->note)
        return;
    va_list ap;
    va_start(ap, fmt);
    gchar *s = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    dl->o->note(s, dl->o->user);
    g_free(s);
}

static void
report(struct dl *dl, enum unclip_dl_event ev, uint64_t file_done, bool force)
{
    double t = now_s();
    /* speed: bytes over the last ~2 s window, smoothed */
    if (t - dl->speed_t >= 0.5) {
        double inst = (double)(dl->run_bytes - dl->speed_bytes) / (t - dl->speed_t);
        dl->speed = dl->speed > 0 ? 0.75 * dl->speed + 0.25 * inst : inst;
        dl->speed_t = t;
        dl->speed_bytes = dl->run_bytes;
    }
    if (!dl->o->progress)
        return;
    if (!force && t - dl->last_report < 0.1)
        return;
    dl->last_report = t;
    struct unclip_dl_progress p = {
        .event = ev,
        .file = dl->file,
        .index = dl->index,
        .count = dl->count,
        .file_done = file_done,
        .file_total = dl->file_total,
        .done = dl->done_before + (file_done > dl->file_base ? file_done - dl->file_base : 0),
        .total = dl->total,
        .bytes_per_s = dl->speed,
        .eta_s = -1,
        .elapsed_s = t - dl->t0,
    };
    if (p.done > p.total)
        p.total = p.done;
    if (dl->speed > 1.0)
        p.eta_s = (double)(p.total - p.done) / dl->speed;
    dl->o->progress(&p, dl->o->user);
}

static size_t
on_header(char *buf, size_t size, size_t n, void *user)
{
    struct xfer *x = user;
    size_t len = size * n;
    gchar *line = g_strndup(buf, len);
    g_strchomp(line);
    if (g_str_has_prefix(line, "HTTP/")) {
        /* a new response (redirects give several): reset what we read of the last one */
        const char *sp = strchr(line, ' ');
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->cr_start = x->cr_end = x->cr_total = -1;
        x->content_length = -1;
        x->next_link[0] = '\0';
    } else {
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = '\0';
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            if (!g_ascii_strcasecmp(line, "content-range")) {
                long long a, b;
                char tot[32];
                if (sscanf(v, "bytes %lld-%lld/%31s", &a, &b, tot) == 3) {
                    x->cr_start = a;
                    x->cr_end = b;
                    x->cr_total = tot[0] == '*' ? -1 : strtoll(tot, NULL, 10);
                }
            } else if (!g_ascii_strcasecmp(line, "content-length")) {
                x->content_length = strtoll(v, NULL, 10);
            } else if (!g_ascii_strcasecmp(line, "x-linked-etag")) {
                /* "W/\"abc\"" or "\"abc\"": keep the hex */
                const char *q = strchr(v, '"');
                const char *s = q ? q + 1 : v;
                size_t l = strcspn(s, "\"");
                if (l < sizeof x->linked_etag) {
                    memcpy(x->linked_etag, s, l);
                    x->linked_etag[l] = '\0';
                }
            } else if (!g_ascii_strcasecmp(line, "link")) {
                /* <url>; rel="next" */
                const char *lt = strchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;
                if (lt && gt && strstr(gt, "rel=\"next\"") &&
                    (size_t)(gt - lt - 1) < sizeof x->next_link) {
                    memcpy(x->next_link, lt + 1, (size_t)(gt - lt - 1));
                    x->next_link[gt - lt - 1] = '\0';
                }
            }
        }
    }
    g_free(line);
    return len;
}

static size_t
on_body(char *buf, size_t size, size_t n, void *user)
{
    struct xfer *x = user;
    size_t len = size * n;
    if (x->status >= 300 || x->status < 200) {
        /* an error page: keep its start for the message, drop the rest */
        size_t room = sizeof x->errbody - 1 - x->errbody_len;
        size_t k = len < room ? len : room;
        memcpy(x->errbody + x->errbody_len, buf, k);
        x->errbody_len += k;
        x->errbody[x->errbody_len] = '\0';
        return len;
    }
    if (!x->body_started) {
        x->body_started = true;
        if (x->sink == SINK_FILE) {
            if (x->status == 200 && x->range_to >= 0) {
                /* a bounded range answered with the whole file: nothing of it is wanted */
                x->ignored_range = true;
                return 0;
            }
            if (x->status == 200 && x->range_from > 0) {
                /* the server ignored the Range: start the file again */
                note(x->dl, "%s: the server does not resume (HTTP 200 to a range request); "
                            "starting the file again", x->dl->file);
                if (fflush(x->fp) != 0 || ftruncate(fileno(x->fp), 0) != 0 ||
                    fseek(x->fp, 0, SEEK_SET) != 0) {
                    x->write_failed = true;
                    x->write_errno = errno;
                    return 0;
                }
                x->file_pos = 0;
                x->range_from = 0;
            } else if (x->status == 206 && (x->cr_start != (int64_t)x->range_from)) {
                x->range_mismatch = true;
                return 0;
            }
        } else if (x->status == 206 && x->cr_start != (int64_t)x->range_from) {
            x->range_mismatch = true;
            return 0;
        }
    }
    x->dl->run_bytes += len;
    if (x->sink == SINK_MEM) {
        if (x->mem->len + len > x->mem_cap) {
            x->too_much = true;
            return 0;
        }
        g_byte_array_append(x->mem, (const guint8 *)buf, (guint)len);
        return len;
    }
    if (fwrite(buf, 1, len, x->fp) != len) {
        x->write_failed = true;
        x->write_errno = errno;
        return 0;
    }
    x->file_pos += len;
    report(x->dl, UNCLIP_DL_EV_PROGRESS, x->file_pos, false);
    return len;
}

static int
on_xferinfo(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
            curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    struct xfer *x = user;
    if (x->dl->o->cancel && x->dl->o->cancel(x->dl->o->user)) {
        x->dl->cancelled = true;
        return 1;
    }
    return 0;
}

/* Result of one request. */
enum req_result {
    REQ_OK = 0,
    REQ_RETRY,      /* transient: network, 5xx, 429, short body                     */
    REQ_FATAL,      /* do not retry: 4xx, disk error, range refused, cancelled       */
};

/* URL-encodes each "/"-separated segment of a path (revision: the whole, slashes too). */
static gchar *
enc_path(const char *path)
{
    gchar **parts = g_strsplit(path, "/", -1);
    for (int i = 0; parts[i]; i++) {
        gchar *e = g_uri_escape_string(parts[i], NULL, FALSE);
        g_free(parts[i]);
        parts[i] = e;
    }
    gchar *r = g_strjoinv("/", parts);
    g_strfreev(parts);
    return r;
}

static gchar *
resolve_url(const struct dl *dl, const struct unclip_dl_item *it)
{
    gchar *repo = enc_path(it->repo);
    gchar *rev = g_uri_escape_string(it->revision, NULL, FALSE);
    gchar *path = enc_path(it->path);
    size_t el = strlen(dl->endpoint);
    const char *slash = el && dl->endpoint[el - 1] == '/' ? "" : "/";
    gchar *u = g_strdup_printf("%s%s%s/resolve/%s/%s", dl->endpoint, slash, repo, rev, path);
    g_free(repo);
    g_free(rev);
    g_free(path);
    return u;
}

/* Performs one GET. Range from..to (to = -1: open end; from = 0 and to = -1: no Range). */
static enum req_result
perform(struct dl *dl, const char *url, struct xfer *x, struct unclip_err *err)
{
    CURL *c = dl->curl;
    curl_easy_reset(c);
    dl->curl_err[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "gimp-unclip/" UNCLIP_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, dl->curl_err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)dl->o->connect_timeout_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)dl->o->stall_timeout_s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    /* no compression: byte offsets must be the file's */
    curl_easy_setopt(c, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024L); /* fewer, larger writes */
    char range[64] = "";
    if (x->range_from > 0 || x->range_to >= 0) {
        if (x->range_to >= 0)
            snprintf(range, sizeof range, "%llu-%lld", (unsigned long long)x->range_from,
                     (long long)x->range_to);
        else
            snprintf(range, sizeof range, "%llu-", (unsigned long long)x->range_from);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    x->status = 0;
    x->cr_start = x->cr_end = x->cr_total = x->content_length = -1;
    CURLcode rc = curl_easy_perform(c);
    if (x->fp)
        fflush(x->fp);

    if (dl->cancelled) {
        unclip__fail(err, UNCLIP_E_CANCELLED, "download cancelled");
        return REQ_FATAL;
    }
    if (x->write_failed) {
        unclip__fail(err, UNCLIP_E_IO, "%s: cannot write: %s", dl->file,
                     g_strerror(x->write_errno));
        return REQ_FATAL;
    }
    if (x->range_mismatch) {
        unclip__fail(err, UNCLIP_E_IO, "%s: asked for bytes from %llu, the server sent from "
                     "%lld", url, (unsigned long long)x->range_from, (long long)x->cr_start);
        return REQ_RETRY;
    }
    if (x->ignored_range) {
        unclip__fail(err, UNCLIP_E_IO, "%s: the server ignores Range requests (HTTP 200 to "
                     "bytes %s): cannot fetch part of a file from it", url, range);
        return REQ_FATAL;
    }
    if (x->too_much) {
        unclip__fail(err, UNCLIP_E_IO, "%s: the server sent more than the %llu bytes asked "
                     "for (it ignores Range requests?)", url,
                     (unsigned long long)x->mem_cap);
        return REQ_FATAL;
    }
    if (rc != CURLE_OK) {
        const char *detail = dl->curl_err[0] ? dl->curl_err : curl_easy_strerror(rc);
        bool conn = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                    rc == CURLE_COULDNT_RESOLVE_PROXY;
        unclip__fail(err, UNCLIP_E_IO, "%s: %s%s", url, detail,
                     conn ? " (is the server up? the endpoint is set by --mirror, "
                            "UNCLIP_HF_ENDPOINT or HF_ENDPOINT)"
                          : "");
        return REQ_RETRY;
    }
    if (x->status >= 200 && x->status < 300)
        return REQ_OK;
    gchar *body = g_strescape(x->errbody, NULL);
    enum req_result r = REQ_FATAL;
    if (x->status == 404) {
        unclip__fail(err, UNCLIP_E_MODEL, "%s: not on the server (HTTP 404)%s%s", url,
                     *body ? ": " : "", body);
    } else if (x->status == 401 || x->status == 403) {
        unclip__fail(err, UNCLIP_E_IO, "%s: access refused (HTTP %ld)%s%s", url, x->status,
                     *body ? ": " : "", body);
    } else if (x->status == 416) {
        unclip__fail(err, UNCLIP_E_IO, "%s: range %s not satisfiable (HTTP 416)", url, range);
        r = REQ_RETRY;
    } else {
        unclip__fail(err, UNCLIP_E_IO, "%s: HTTP %ld%s%s", url, x->status, *body ? ": " : "",
                     body);
        r = (x->status >= 500 || x->status == 429 || x->status == 408) ? REQ_RETRY
                                                                        : REQ_FATAL;
    }
    g_free(body);
    return r;
}

/* Waits before attempt `k` (1-based, k >= 2). */
static void
backoff(struct dl *dl, int32_t k)
{
    int64_t ms = dl->o->retry_delay_ms;
    for (int32_t i = 2; i < k && ms < 30000; i++)
        ms *= 2;
    sleep_ms((int32_t)(ms < 30000 ? ms : 30000));
}

/* GET into memory (cap bytes at most), retried. */
static unclip_status
get_mem(struct dl *dl, const char *url, uint64_t from, int64_t to, uint64_t cap, int32_t attempts,
        GByteArray **out, struct xfer *info, struct unclip_err *err)
{
    for (int32_t k = 1;; k++) {
        struct xfer x = {.dl = dl, .sink = SINK_MEM, .range_from = from, .range_to = to,
                         .mem = g_byte_array_new(), .mem_cap = cap};
        enum req_result r = perform(dl, url, &x, err);
        if (r == REQ_OK && x.status == 200 && (from > 0 || to >= 0) &&
            !(from == 0 && to >= 0 && x.mem->len <= (uint64_t)to + 1)) {
            unclip__fail(err, UNCLIP_E_IO, "%s: the server ignores Range requests", url);
            r = REQ_FATAL;
        }
        if (r == REQ_OK) {
            *out = x.mem;
            if (info)
                *info = x;
            return UNCLIP_OK;
        }
        g_byte_array_unref(x.mem);
        if (r == REQ_FATAL || k >= attempts)
            return err->code;
        note(dl, "%s; trying again (attempt %d of %d)", err->msg, (int)k + 1, (int)attempts);
        backoff(dl, k + 1);
    }
}

/* ---- the tree API manifest ---- */

struct remote {
    uint64_t size;
    char sha256[65];   /* LFS files: SHA-256 of the content; "" otherwise */
    char oid[65];      /* git blob SHA-1                                  */
};

static void
remote_free(gpointer p)
{
    unclip__free(p);
}

/* Fills `files` (path -> struct remote) for repo@rev from the tree API (all pages). */
static unclip_status
list_repo(struct dl *dl, const char *repo, const char *rev, GHashTable *files,
          struct unclip_err *err)
{
    gchar *erepo = enc_path(repo);
    gchar *erev = g_uri_escape_string(rev, NULL, FALSE);
    size_t el = strlen(dl->endpoint);
    const char *slash = el && dl->endpoint[el - 1] == '/' ? "" : "/";
    gchar *url = g_strdup_printf("%s%sapi/models/%s/tree/%s?recursive=true", dl->endpoint, slash,
                                 erepo, erev);
    g_free(erepo);
    g_free(erev);
    unclip_status st = UNCLIP_OK;
    for (int page = 0; url && page < 1000; page++) {
        GByteArray *body = NULL;
        struct xfer info;
        /* A server that cannot be reached at all is most likely a wrong endpoint: fail after
         * two tries rather than the full back-off. */
        int32_t att = dl->o->attempts < 2 ? dl->o->attempts : 2;
        st = get_mem(dl, url, 0, -1, 64u << 20, att, &body, &info, err);
        if (st != UNCLIP_OK) {
            unclip__err_prefix(err, "listing %s@%s", repo, rev);
            break;
        }
        JsonParser *p = json_parser_new();
        GError *ge = NULL;
        if (!json_parser_load_from_data(p, (const gchar *)body->data, (gssize)body->len, &ge) ||
            !JSON_NODE_HOLDS_ARRAY(json_parser_get_root(p))) {
            st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: not a JSON list of files%s%s", url,
                              ge ? ": " : "", ge ? ge->message : "");
            g_clear_error(&ge);
            g_object_unref(p);
            g_byte_array_unref(body);
            break;
        }
        JsonArray *a = json_node_get_array(json_parser_get_root(p));
        for (guint i = 0; i < json_array_get_length(a); i++) {
            JsonNode *n = json_array_get_element(a, i);
            if (!JSON_NODE_HOLDS_OBJECT(n))
                continue;
            JsonObject *o = json_node_get_object(n);
            const char *type = json_object_get_string_member_with_default(o, "type", "");
            const char *path = json_object_get_string_member_with_default(o, "path", NULL);
            if (strcmp(type, "file") || !path)
                continue;
            struct remote *r = unclip__calloc(1, sizeof *r);
            if (!r) {
                st = unclip__fail(err, UNCLIP_E_NOMEM, "tree listing: out of memory");
                break;
            }
            r->size = (uint64_t)json_object_get_int_member_with_default(o, "size", 0);
            snprintf(r->oid, sizeof r->oid, "%s",
                     json_object_get_string_member_with_default(o, "oid", ""));
            if (json_object_has_member(o, "lfs") &&
                JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "lfs"))) {
                JsonObject *lfs = json_object_get_object_member(o, "lfs");
                /* the hub spells it "oid" (older: "sha256") */
                const char *h = json_object_get_string_member_with_default(
                    lfs, "oid", json_object_get_string_member_with_default(lfs, "sha256", ""));
                snprintf(r->sha256, sizeof r->sha256, "%s", h);
                r->size = (uint64_t)json_object_get_int_member_with_default(lfs, "size",
                                                                            (gint64)r->size);
            }
            g_hash_table_replace(files, g_strdup(path), r);
        }
        g_object_unref(p);
        g_byte_array_unref(body);
        g_free(url);
        url = NULL;
        if (st == UNCLIP_OK && info.next_link[0]) {
            /* the hub's pages link absolute URLs; a relative one is joined to the endpoint */
            if (strstr(info.next_link, "://"))
                url = g_strdup(info.next_link);
            else
                url = g_strdup_printf("%s%s", dl->endpoint, info.next_link);
        }
    }
    g_free(url);
    return st;
}

/* ---- planning ---- */

/* A contiguous run of bytes copied from the remote file into ours. */
struct segment {
    uint64_t src, dst, len;
};

struct job {
    const struct unclip_dl_item *it;
    const struct remote *r;
    char *final, *part;
    uint64_t total;            /* bytes of our file                                      */
    uint64_t on_disk;          /* of it already in the .part or final                    */
    /* TENSORS */
    uint8_t *header;
    uint64_t header_len;
    struct segment *segs;
    int32_t n_segs;
    int32_t n_tensors;
};

static void
job_clear(struct job *j)
{
    unclip__free(j->final);
    unclip__free(j->part);
    unclip__free(j->header);
    unclip__free(j->segs);
}

static bool
prefix_match(const char *const *prefixes, const char *name)
{
    for (int i = 0; prefixes && prefixes[i]; i++) {
        size_t l = strlen(prefixes[i]);
        if (l && prefixes[i][l - 1] == '.' ? !strncmp(name, prefixes[i], l)
                                           : !strcmp(name, prefixes[i]))
            return true;
    }
    return false;
}

/* Reads the remote safetensors header and plans the extraction. */
static unclip_status
plan_tensors(struct dl *dl, struct job *j, struct unclip_err *err)
{
    gchar *url = resolve_url(dl, j->it);
    const uint64_t S = j->r->size;
    GByteArray *head = NULL;
    struct xfer info;
    unclip_status st;
    uint64_t first = S < 65536 ? S : 65536;
    if (S < 8) {
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: %llu bytes is no safetensors file", url,
                          (unsigned long long)S);
        goto out;
    }
    st = get_mem(dl, url, 0, (int64_t)first - 1, first, dl->o->attempts, &head, &info, err);
    if (st != UNCLIP_OK)
        goto out;
    if (info.linked_etag[0] && j->r->sha256[0] && strcmp(info.linked_etag, j->r->sha256)) {
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: the server's file (X-Linked-Etag %s) is "
                          "not the one the tree lists (%s)", url, info.linked_etag, j->r->sha256);
        goto out;
    }
    if (head->len < 8) {
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: short answer (%u bytes) to the header "
                          "request", url, head->len);
        goto out;
    }
    uint64_t N = 0;
    for (int k = 7; k >= 0; k--)
        N = (N << 8) | head->data[k];
    if (N == 0 || N > UNCLIP_ST_MAX_HEADER || 8 + N > S) {
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: header length %llu does not fit the file's "
                          "%llu bytes (not safetensors?)", url, (unsigned long long)N,
                          (unsigned long long)S);
        goto out;
    }
    if (8 + N > head->len) {
        GByteArray *more = NULL;
        st = get_mem(dl, url, head->len, (int64_t)(8 + N) - 1, 8 + N - head->len,
                     dl->o->attempts, &more, NULL, err);
        if (st != UNCLIP_OK)
            goto out;
        g_byte_array_append(head, more->data, more->len);
        g_byte_array_unref(more);
    }
    if (head->len < 8 + N) {
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: got %u header bytes of %llu", url,
                          head->len, (unsigned long long)(8 + N));
        goto out;
    }

    JsonParser *p = json_parser_new();
    GError *ge = NULL;
    if (!json_parser_load_from_data(p, (const gchar *)head->data + 8, (gssize)N, &ge) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: the safetensors header is not a JSON "
                          "object%s%s", url, ge ? ": " : "", ge ? ge->message : "");
        g_clear_error(&ge);
        g_object_unref(p);
        goto out;
    }
    JsonObject *root = json_node_get_object(json_parser_get_root(p));
    GList *names = json_object_get_members(root);
    const uint64_t data_len = S - 8 - N;
    int32_t n = 0, cap = (int32_t)g_list_length(names);
    struct unclip_st_entry *e = unclip__calloc((size_t)(cap ? cap : 1), sizeof *e);
    if (!e) {
        st = unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of memory", url);
        g_list_free(names);
        g_object_unref(p);
        goto out;
    }
    for (GList *l = names; l && st == UNCLIP_OK; l = l->next) {
        const char *name = l->data;
        if (!strcmp(name, "__metadata__") || !prefix_match(j->it->prefixes, name))
            continue;
        JsonNode *tn = json_object_get_member(root, name);
        JsonObject *t = JSON_NODE_HOLDS_OBJECT(tn) ? json_node_get_object(tn) : NULL;
        JsonNode *dn = t ? json_object_get_member(t, "dtype") : NULL;
        JsonNode *sn = t ? json_object_get_member(t, "shape") : NULL;
        JsonNode *on = t ? json_object_get_member(t, "data_offsets") : NULL;
        JsonArray *sh = sn && JSON_NODE_HOLDS_ARRAY(sn) ? json_node_get_array(sn) : NULL;
        JsonArray *of = on && JSON_NODE_HOLDS_ARRAY(on) ? json_node_get_array(on) : NULL;
        const char *dtype = dn && JSON_NODE_HOLDS_VALUE(dn) &&
                                    json_node_get_value_type(dn) == G_TYPE_STRING
                                ? json_node_get_string(dn)
                                : NULL;
        if (!dtype || !sh || !of || json_array_get_length(of) != 2 ||
            json_array_get_length(sh) > 8) {
            st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: header entry '%s' is malformed", url,
                              name);
            break;
        }
        struct unclip_st_entry *x = &e[n];
        x->name = name;
        x->dtype = dtype;
        x->ndim = (int32_t)json_array_get_length(sh);
        for (int32_t k = 0; k < x->ndim; k++)
            x->shape[k] = json_array_get_int_element(sh, (guint)k);
        int64_t b = json_array_get_int_element(of, 0), en = json_array_get_int_element(of, 1);
        if (b < 0 || en < b || (uint64_t)en > data_len) {
            st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] "
                              "outside the %llu data bytes", url, name, (long long)b,
                              (long long)en, (unsigned long long)data_len);
            break;
        }
        x->nbytes = (uint64_t)(en - b);
        x->order = b;
        n++;
    }
    if (st == UNCLIP_OK && n == 0)
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: no tensor named %s... (not a CLIP "
                          "checkpoint?)", url, j->it->prefixes ? j->it->prefixes[0] : "?");
    static const char *const meta[] = {"format", "pt", NULL};
    if (st == UNCLIP_OK)
        st = unclip__st_layout(e, n, meta, &j->header, &j->header_len, err);
    if (st == UNCLIP_OK) {
        j->segs = unclip__calloc((size_t)n, sizeof *j->segs);
        if (!j->segs)
            st = unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of memory", url);
    }
    if (st == UNCLIP_OK) {
        uint64_t dst = j->header_len;
        for (int32_t i = 0; i < n; i++) {
            uint64_t src = 8 + N + (uint64_t)e[i].order;
            struct segment *last = j->n_segs ? &j->segs[j->n_segs - 1] : NULL;
            if (last && last->src + last->len == src && last->dst + last->len == dst)
                last->len += e[i].nbytes;
            else if (e[i].nbytes)
                j->segs[j->n_segs++] = (struct segment){src, dst, e[i].nbytes};
            dst += e[i].nbytes;
        }
        j->total = dst;
        j->n_tensors = n;
    }
    unclip__free(e);
    g_list_free(names);
    g_object_unref(p);
out:
    if (head)
        g_byte_array_unref(head);
    g_free(url);
    return st;
}

/* ---- fetching ---- */

/* Keeps `have` bytes of an existing file when its first header_len bytes equal ours. */
static bool
starts_with_header(const char *path, const uint8_t *h, uint64_t hl)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    uint8_t *buf = unclip__malloc(hl ? hl : 1);
    bool same = buf && fread(buf, 1, hl, fp) == hl && !memcmp(buf, h, hl);
    unclip__free(buf);
    fclose(fp);
    return same;
}

/* Whole-file transfer with resume; returns when the .part holds j->total bytes. */
static enum req_result
fetch_range_to_file(struct dl *dl, const char *url, FILE *fp, uint64_t from, int64_t to,
                    bool expect_206, const char *want_etag, struct unclip_err *err)
{
    struct xfer x = {.dl = dl, .sink = SINK_FILE, .range_from = from, .range_to = to, .fp = fp,
                     .file_pos = from};
    enum req_result r = perform(dl, url, &x, err);
    if (r != REQ_OK)
        return r;
    if (want_etag && x.linked_etag[0] && strcmp(x.linked_etag, want_etag)) {
        unclip__fail(err, UNCLIP_E_FORMAT, "%s: the server's file (X-Linked-Etag %s) is not "
                     "the one the tree lists (%s)", url, x.linked_etag, want_etag);
        return REQ_FATAL;
    }
    if (expect_206 && x.status != 206) {
        unclip__fail(err, UNCLIP_E_IO, "%s: HTTP %ld to a range request (206 expected): the "
                     "server cannot serve parts of files", url, x.status);
        return REQ_FATAL;
    }
    return REQ_OK;
}

/* <hub>/models--org--name/blobs/<hash> when it exists with `size` bytes (new string). */
static char *
cache_blob(const struct dl *dl, const char *repo, const char *hash, uint64_t size)
{
    if (!dl->hub || !hash[0])
        return NULL;
    gchar **parts = g_strsplit(repo, "/", -1);
    gchar *joined = g_strjoinv("--", parts);
    gchar *p = g_strdup_printf("%s/models--%s/blobs/%s", dl->hub, joined, hash);
    g_strfreev(parts);
    g_free(joined);
    char *r = file_size(p) == (int64_t)size ? unclip__strdup(p) : NULL;
    g_free(p);
    return r;
}

/* Copies bytes [from, from + len) of `src` to the end of `fp`. */
static bool
copy_range(FILE *src, uint64_t from, uint64_t len, FILE *fp, struct dl *dl, uint64_t *pos)
{
    if (fseeko(src, (off_t)from, SEEK_SET) != 0)
        return false;
    enum { BUF = 1 << 20 };
    char *buf = unclip__malloc(BUF);
    if (!buf)
        return false;
    bool ok = true;
    while (ok && len > 0) {
        size_t n = len < BUF ? (size_t)len : BUF;
        ok = fread(buf, 1, n, src) == n && fwrite(buf, 1, n, fp) == n;
        len -= n;
        *pos += n;
        report(dl, UNCLIP_DL_EV_PROGRESS, *pos, false);
    }
    unclip__free(buf);
    return ok;
}

/* Puts the hub cache's blob of the file into the .part (hard link, else copy). */
static bool
part_from_cache(struct dl *dl, struct job *j, const char *hash)
{
    char *blob = cache_blob(dl, j->it->repo, hash, j->total);
    if (!blob)
        return false;
    unlink(j->part);
    bool ok = link(blob, j->part) == 0;
    if (!ok) {
        FILE *in = fopen(blob, "rb"), *out = in ? fopen(j->part, "wb") : NULL;
        uint64_t pos = 0;
        ok = in && out && copy_range(in, 0, j->total, out, dl, &pos);
        if (out && fclose(out) != 0)
            ok = false;
        if (in)
            fclose(in);
        if (!ok)
            unlink(j->part);
    }
    if (ok)
        note(dl, "%s: taken from the hub cache (%s)", j->it->dest, blob);
    unclip__free(blob);
    return ok;
}

static unclip_status
fetch_file(struct dl *dl, struct job *j, struct unclip_err *err)
{
    gchar *url = resolve_url(dl, j->it);
    const bool lfs = j->r->sha256[0] != '\0';
    const char *want = lfs ? j->r->sha256 : j->r->oid;
    unclip_status st = UNCLIP_OK;
    bool cache_tried = false;
    for (int32_t k = 1;; k++) {
        if (!cache_tried && file_size(j->part) < (int64_t)j->total) {
            cache_tried = true; /* once: a blob that fails verification is not taken again */
            part_from_cache(dl, j, want);
        }
        int64_t have = file_size(j->part);
        if (have < 0 || (uint64_t)have > j->total)
            have = 0;
        FILE *fp = fopen(j->part, have > 0 ? "r+b" : "wb");
        if (!fp) {
            st = unclip__fail(err, UNCLIP_E_IO, "%s: cannot open: %s", j->part,
                              g_strerror(errno));
            break;
        }
        if (have > 0 && (ftruncate(fileno(fp), have) != 0 || fseek(fp, 0, SEEK_END) != 0)) {
            st = unclip__fail(err, UNCLIP_E_IO, "%s: %s", j->part, g_strerror(errno));
            fclose(fp);
            break;
        }
        if (have > 0)
            note(dl, "%s: resuming at %llu of %llu bytes", j->it->dest,
                 (unsigned long long)have, (unsigned long long)j->total);
        enum req_result r = REQ_OK;
        report(dl, UNCLIP_DL_EV_FILE_START, (uint64_t)have, true);
        if ((uint64_t)have < j->total)
            r = fetch_range_to_file(dl, url, fp, (uint64_t)have, -1, false, lfs ? want : NULL,
                                    err);
        bool closed_ok = fclose(fp) == 0;
        if (r == REQ_OK && !closed_ok) {
            unclip__fail(err, UNCLIP_E_IO, "%s: cannot write: %s", j->part, g_strerror(errno));
            r = REQ_FATAL;
        }
        if (r == REQ_OK) {
            int64_t got = file_size(j->part);
            if (got != (int64_t)j->total) {
                unclip__fail(err, UNCLIP_E_IO, "%s: transfer ended at %lld of %llu bytes", url,
                             (long long)got, (unsigned long long)j->total);
                r = REQ_RETRY;
                if (got > (int64_t)j->total)
                    unlink(j->part);
            }
        }
        if (r == REQ_OK) {
            char hex[65];
            st = unclip__dl_hash_file(j->part, lfs, hex, err);
            if (st != UNCLIP_OK)
                break;
            if (!strcmp(hex, want)) {
                st = unclip__dl_commit_file(j->part, j->final, err);
                break;
            }
            unclip__fail(err, UNCLIP_E_FORMAT, "%s: %s %s, the hub lists %s: the download is "
                         "corrupt", j->it->dest, lfs ? "SHA-256" : "git blob SHA-1", hex, want);
            unlink(j->part);
            r = REQ_RETRY;
        }
        if (r == REQ_FATAL || k >= dl->o->attempts) {
            st = err->code;
            break;
        }
        note(dl, "%s; trying again (attempt %d of %d)", err->msg, (int)k + 1,
             (int)dl->o->attempts);
        backoff(dl, k + 1);
    }
    g_free(url);
    return st;
}

static unclip_status
fetch_tensors(struct dl *dl, struct job *j, struct unclip_err *err)
{
    gchar *url = resolve_url(dl, j->it);
    unclip_status st = UNCLIP_OK;
    for (int32_t k = 1;; k++) {
        int64_t have = file_size(j->part);
        if (have > 0 && ((uint64_t)have < j->header_len || (uint64_t)have > j->total ||
                         !starts_with_header(j->part, j->header, j->header_len)))
            have = -1; /* not ours (another remote version?): start again */
        FILE *fp = fopen(j->part, have > 0 ? "r+b" : "wb");
        if (!fp) {
            st = unclip__fail(err, UNCLIP_E_IO, "%s: cannot open: %s", j->part,
                              g_strerror(errno));
            break;
        }
        bool ok = true;
        if (have <= 0)
            ok = fwrite(j->header, 1, j->header_len, fp) == j->header_len && fflush(fp) == 0;
        else
            ok = ftruncate(fileno(fp), have) == 0 && fseek(fp, 0, SEEK_END) == 0;
        if (!ok) {
            st = unclip__fail(err, UNCLIP_E_IO, "%s: cannot write: %s", j->part,
                              g_strerror(errno));
            fclose(fp);
            break;
        }
        uint64_t pos = have > 0 ? (uint64_t)have : j->header_len;
        if (have > 0)
            note(dl, "%s: resuming at %llu of %llu bytes", j->it->dest,
                 (unsigned long long)pos, (unsigned long long)j->total);
        report(dl, UNCLIP_DL_EV_FILE_START, pos, true);
        enum req_result r = REQ_OK;
        /* The whole file in the hub cache (e.g. CLIP-L, which Stable Diffusion users have):
         * the ranges are read from there. Its hash is not checked (it is the whole file's);
         * the cache's own name for it is that hash, and the result is validated below. */
        char *blob = k == 1 ? cache_blob(dl, j->it->repo, j->r->sha256, j->r->size) : NULL;
        FILE *bf = blob ? fopen(blob, "rb") : NULL;
        if (bf)
            note(dl, "%s: reading the tensors from the hub cache (%s)", j->it->dest, blob);
        unclip__free(blob);
        for (int32_t s = 0; s < j->n_segs && r == REQ_OK; s++) {
            const struct segment *g = &j->segs[s];
            if (g->dst + g->len <= pos)
                continue;
            uint64_t skip = pos - g->dst;
            if (bf) {
                uint64_t p2 = pos;
                if (!copy_range(bf, g->src + skip, g->len - skip, fp, dl, &p2)) {
                    unclip__fail(err, UNCLIP_E_IO, "%s: cannot copy from the hub cache",
                                 j->it->dest);
                    r = REQ_RETRY; /* the next attempt fetches from the server */
                }
            } else {
                r = fetch_range_to_file(dl, url, fp, g->src + skip,
                                        (int64_t)(g->src + g->len - 1), true,
                                        j->r->sha256[0] ? j->r->sha256 : NULL, err);
            }
            if (r == REQ_OK) {
                fflush(fp);
                int64_t now = file_size(j->part);
                if (now != (int64_t)(g->dst + g->len)) {
                    unclip__fail(err, UNCLIP_E_IO, "%s: range ended at %lld of %llu bytes",
                                 url, (long long)now, (unsigned long long)(g->dst + g->len));
                    r = REQ_RETRY;
                }
                pos = g->dst + g->len;
            }
        }
        if (bf)
            fclose(bf);
        bool closed_ok = fclose(fp) == 0;
        if (r == REQ_OK && !closed_ok) {
            unclip__fail(err, UNCLIP_E_IO, "%s: cannot write: %s", j->part, g_strerror(errno));
            r = REQ_FATAL;
        }
        if (r == REQ_OK) {
            /* The full validation of the reader, and the tensor count we asked for. */
            struct unclip_st_file *f = NULL;
            unclip_status vs = unclip__st_open(j->part, &f, err);
            if (vs == UNCLIP_OK && unclip__st_count(f) != j->n_tensors)
                vs = unclip__fail(err, UNCLIP_E_FORMAT, "%s: %d tensors written, %d expected",
                                  j->part, (int)unclip__st_count(f), (int)j->n_tensors);
            unclip__st_close(f);
            if (vs == UNCLIP_OK) {
                st = unclip__dl_commit_file(j->part, j->final, err);
                break;
            }
            unlink(j->part);
            r = REQ_RETRY;
        }
        if (r == REQ_FATAL || k >= dl->o->attempts) {
            st = err->code;
            break;
        }
        note(dl, "%s; trying again (attempt %d of %d)", err->msg, (int)k + 1,
             (int)dl->o->attempts);
        backoff(dl, k + 1);
    }
    g_free(url);
    return st;
}

/* Whether the final file is already there and right. */
static unclip_status
final_ok(struct job *j, bool *ok, struct unclip_err *err)
{
    *ok = false;
    int64_t sz = file_size(j->final);
    if (sz < 0)
        return UNCLIP_OK;
    if ((uint64_t)sz != j->total)
        return UNCLIP_OK;
    if (j->it->kind == UNCLIP_DL_TENSORS) {
        *ok = starts_with_header(j->final, j->header, j->header_len);
        return UNCLIP_OK;
    }
    const bool lfs = j->r->sha256[0] != '\0';
    char hex[65];
    unclip_status st = unclip__dl_hash_file(j->final, lfs, hex, err);
    if (st == UNCLIP_OK)
        *ok = !strcmp(hex, lfs ? j->r->sha256 : j->r->oid);
    return st;
}

/* ---- model_index.json ---- */

static bool
component_complete(const struct unclip_dl_plan *plan, const char *dest, const char *comp)
{
    size_t cl = strlen(comp);
    bool any = false;
    for (int32_t i = 0; i < plan->n_items; i++) {
        const char *d = plan->items[i].dest;
        if (strncmp(d, comp, cl) || d[cl] != '/')
            continue;
        gchar *p = g_build_filename(dest, d, NULL);
        bool there = file_size(p) >= 0;
        g_free(p);
        if (!there)
            return false;
        any = true;
    }
    return any;
}

static unclip_status
write_index(const struct unclip_dl_plan *plan, const char *dest, int32_t *n_written,
            struct unclip_err *err)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "_class_name");
    json_builder_add_string_value(b, plan->class_name);
    json_builder_set_member_name(b, "_diffusers_version");
    json_builder_add_string_value(b, "0.27.2");
    int32_t n = 0;
    for (int32_t i = 0; i < plan->n_components; i++) {
        const struct unclip_dl_component *c = &plan->components[i];
        if (!component_complete(plan, dest, c->name))
            continue;
        json_builder_set_member_name(b, c->name);
        json_builder_begin_array(b);
        json_builder_add_string_value(b, c->library);
        json_builder_add_string_value(b, c->class_name);
        json_builder_end_array(b);
        n++;
    }
    json_builder_end_object(b);
    JsonGenerator *g = json_generator_new();
    JsonNode *root = json_builder_get_root(b);
    json_generator_set_root(g, root);
    json_generator_set_pretty(g, TRUE);
    json_generator_set_indent(g, 2);
    gsize len = 0;
    gchar *text = json_generator_to_data(g, &len);
    json_node_unref(root);
    g_object_unref(g);
    g_object_unref(b);
    gchar *path = g_build_filename(dest, "model_index.json", NULL);
    GError *ge = NULL;
    unclip_status st = UNCLIP_OK;
    gchar *withnl = g_strconcat(text, "\n", NULL);
    /* g_file_set_contents writes a temporary file and renames it: never half-written */
    if (!g_file_set_contents(path, withnl, -1, &ge))
        st = unclip__fail(err, UNCLIP_E_IO, "%s: %s", path, ge->message);
    g_clear_error(&ge);
    g_free(withnl);
    g_free(text);
    g_free(path);
    *n_written = n;
    return st;
}

/* ---- the run ---- */

static const char *
human(uint64_t b, char *buf, size_t n)
{
    if (b >= 1000000000ull)
        snprintf(buf, n, "%.2f GB", b / 1e9);
    else if (b >= 1000000ull)
        snprintf(buf, n, "%.1f MB", b / 1e6);
    else
        snprintf(buf, n, "%.1f kB", b / 1e3);
    return buf;
}

unclip_status
unclip__dl_run(const struct unclip_dl_plan *plan, const char *dest,
               const struct unclip_dl_opts *opts_in, struct unclip_err *err)
{
    if (!plan || !dest || !*dest)
        return unclip__fail(err, UNCLIP_E_ARG, "download: no plan or destination");
    struct unclip_dl_opts o = opts_in ? *opts_in : unclip__dl_opts_default();
    if (o.attempts < 1)
        o.attempts = 1;
    if (o.connect_timeout_s <= 0)
        o.connect_timeout_s = 30;
    if (o.stall_timeout_s <= 0)
        o.stall_timeout_s = 60;
    if (o.retry_delay_ms < 0)
        o.retry_delay_ms = 0;

    static bool curl_ready = false;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return unclip__fail(err, UNCLIP_E_IO, "download: libcurl failed to initialise");
        curl_ready = true;
    }
    struct dl dl = {.o = &o, .endpoint = unclip__dl_endpoint(&o)};
    dl.curl = curl_easy_init();
    if (!dl.curl)
        return unclip__fail(err, UNCLIP_E_NOMEM, "download: libcurl handle: out of memory");
    dl.t0 = dl.speed_t = now_s();
    if (o.use_hub_cache) {
        dl.hub = unclip__hub_cache_dir();
        if (dl.hub && !g_file_test(dl.hub, G_FILE_TEST_IS_DIR)) {
            unclip__free(dl.hub);
            dl.hub = NULL;
        }
    }

    unclip_status st = UNCLIP_OK;
    GHashTable *lists = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                              (GDestroyNotify)g_hash_table_unref);
    struct job *jobs = unclip__calloc((size_t)plan->n_items, sizeof *jobs);
    int32_t n_jobs = 0;
    if (!jobs) {
        st = unclip__fail(err, UNCLIP_E_NOMEM, "download: out of memory");
        goto out;
    }
    if (g_mkdir_with_parents(dest, 0755) != 0) {
        st = unclip__fail(err, UNCLIP_E_IO, "%s: cannot create the folder: %s", dest,
                          g_strerror(errno));
        goto out;
    }

    /* 1. Manifest: sizes and hashes of everything, before any byte is written. */
    for (int32_t i = 0; i < plan->n_items && st == UNCLIP_OK; i++) {
        const struct unclip_dl_item *it = &plan->items[i];
        if (o.only_group && strcmp(o.only_group, it->group))
            continue;
        gchar *key = g_strdup_printf("%s@%s", it->repo, it->revision);
        GHashTable *files = g_hash_table_lookup(lists, key);
        if (!files) {
            files = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, remote_free);
            g_hash_table_insert(lists, g_strdup(key), files);
            st = list_repo(&dl, it->repo, it->revision, files, err);
        }
        g_free(key);
        if (st != UNCLIP_OK)
            break;
        const struct remote *r = g_hash_table_lookup(files, it->path);
        if (!r) {
            st = unclip__fail(err, UNCLIP_E_MODEL, "%s@%s has no %s (on %s): the server's copy "
                              "of the repository is incomplete or the file moved", it->repo,
                              it->revision, it->path, dl.endpoint);
            break;
        }
        struct job *j = &jobs[n_jobs++];
        j->it = it;
        j->r = r;
        j->total = r->size;
        gchar *f = g_build_filename(dest, it->dest, NULL);
        j->final = unclip__strdup(f);
        gchar *pp = g_strconcat(f, ".part", NULL);
        j->part = unclip__strdup(pp);
        g_free(pp);
        g_free(f);
        if (!j->final || !j->part) {
            st = unclip__fail(err, UNCLIP_E_NOMEM, "download: out of memory");
            break;
        }
        if (it->kind == UNCLIP_DL_TENSORS)
            st = plan_tensors(&dl, j, err);
    }
    if (st != UNCLIP_OK)
        goto out;
    if (n_jobs == 0) {
        st = unclip__fail(err, UNCLIP_E_ARG, "download: nothing in group '%s' of plan '%s'",
                          o.only_group ? o.only_group : "", plan->name);
        goto out;
    }

    /* 2. What is left to fetch, and room for it. */
    uint64_t need = 0, all = 0;
    for (int32_t i = 0; i < n_jobs; i++) {
        struct job *j = &jobs[i];
        int64_t fs = file_size(j->final), ps = file_size(j->part);
        all += j->total;
        if (fs == (int64_t)j->total)
            j->on_disk = j->total;
        else if (fs >= 0)
            note(&dl, "%s: the file in place has %lld bytes, the hub's has %llu; fetching it "
                      "again (the file in place does not match)", j->it->dest, (long long)fs,
                 (unsigned long long)j->total);
        else if (ps > 0 && ps <= (int64_t)j->total)
            j->on_disk = (uint64_t)ps;
        need += j->total - j->on_disk;
    }
    dl.total = need;
    dl.count = n_jobs;
    {
        char a[32], b[32];
        note(&dl, "%s: %d files, %s in all, %s to fetch from %s", plan->name, (int)n_jobs,
             human(all, a, sizeof a), human(need, b, sizeof b), dl.endpoint);
    }
    struct statvfs sv;
    if (o.check_space && need > 0 && statvfs(dest, &sv) == 0) {
        uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
        uint64_t margin = 64ull << 20;
        if (avail < need + margin) {
            char a[32], b[32];
            st = unclip__fail(err, UNCLIP_E_IO, "%s: %s free, the download needs %s more "
                              "(free some space or pick another --dest)", dest,
                              human(avail, a, sizeof a), human(need + margin, b, sizeof b));
            goto out;
        }
    }

    /* 3. Files, one after the other. */
    uint64_t done = 0;
    for (int32_t i = 0; i < n_jobs && st == UNCLIP_OK; i++) {
        struct job *j = &jobs[i];
        dl.index = i;
        dl.file = j->it->dest;
        dl.file_total = j->total;
        if ((st = make_parent(j->final, err)))
            break;
        bool ok = false;
        if (j->on_disk == j->total && (st = final_ok(j, &ok, err)))
            break;
        if (ok) {
            dl.done_before = done; /* kept files were not in `need` */
            dl.file_base = j->total;
            report(&dl, UNCLIP_DL_EV_FILE_KEPT, 0, true);
            continue;
        }
        if (j->on_disk == j->total) {
            /* a final file that is wrong: fetch it again (it stays until the new one is
             * verified, then the rename replaces it) */
            note(&dl, "%s: the file in place does not match the hub's; fetching it again",
                 j->it->dest);
            dl.total += j->total;
            j->on_disk = 0;
        }
        /* progress: done counts bytes fetched in this run, the transfer reports bytes on
         * disk (the .part's earlier bytes included), so it is shifted by those */
        uint64_t before = j->on_disk;
        dl.done_before = done;
        dl.file_base = before;
        st = j->it->kind == UNCLIP_DL_TENSORS ? fetch_tensors(&dl, j, err)
                                              : fetch_file(&dl, j, err);
        if (st != UNCLIP_OK)
            break;
        done += j->total - before;
        dl.done_before = done;
        dl.file_base = j->total;
        report(&dl, UNCLIP_DL_EV_FILE_DONE, j->total, true);
    }
    if (st != UNCLIP_OK)
        goto out;

    /* 4. model_index.json naming the components that are complete. */
    int32_t n_comp = 0;
    st = write_index(plan, dest, &n_comp, err);

out:
    for (int32_t i = 0; i < n_jobs; i++)
        job_clear(&jobs[i]);
    unclip__free(jobs);
    g_hash_table_unref(lists);
    curl_easy_cleanup(dl.curl);
    unclip__free(dl.hub);
    return st;
}
