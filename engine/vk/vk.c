/* Vulkan runtime. See vk.h for the execution and memory model. */
#include "vk.h"

#include "core/alloc.h"
#include "shaders.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>

#define BUF_ALIGN 256u
/* Buffers of at least DEDICATED_MIN bytes get a memory allocation of their own, of exactly
 * their size: carving big buffers out of shared blocks left holes that the next big buffer did
 * not fit (measured: Karlo's prior, 33.5 MB matrices in 64 MiB blocks, 0.7 GB above its
 * weights). Smaller buffers share pool blocks, best fit; a new pool block is half the size of
 * the pool so far, between POOL_MIN_BLOCK and POOL_MAX_BLOCK (few allocations for models with
 * thousands of small tensors, little slack for tiny ones). */
#define DEDICATED_MIN (4ull << 20)
#define POOL_MIN_BLOCK (4ull << 20)
#define POOL_MAX_BLOCK (64ull << 20)
#define BATCH_DISPATCHES 512u

struct block;

struct span;

/* A pipeline made with specialization constants (tile sizes chosen at run time). */
struct spec_pipe {
    int id;
    uint32_t n;
    uint32_t v[UNCLIP_VK_MAX_SPEC];
    VkPipeline pipe;
    struct spec_pipe *next;
};

struct unclip_vk_buf {
    struct unclip_vk *vk;
    struct block *block;
    uint64_t offset;  /* in the block */
    uint64_t size;
    bool view;        /* a view (unclip__vk_buf_view): shares a parent's memory, owns none */
    struct span *spare; /* free-list node for block_give, allocated with the buffer so that
                           freeing never needs memory (a failed node would lose the range
                           for the life of its block, forever in the context's first one) */
    uint64_t serial;    /* unique per context: tells a new buffer from a freed one at the
                           same address (recorded graphs key on it) */
};

/* A recorded graph: command buffers of bounded work, each with its own descriptor pool, so
 * they can be submitted again and again (unclip__vk_replay). */
struct graph_seg {
    VkCommandBuffer cmd;
    VkDescriptorPool pool;
    uint64_t work;
    uint32_t dispatches;
};
struct unclip_vk_graph {
    struct unclip_vk *vk;
    struct graph_seg *seg;
    uint32_t n, cap;
};

/* A free range inside a block; the list is sorted by offset. */
struct span {
    uint64_t offset, size;
    struct span *next;
};

struct block {
    VkDeviceMemory mem;
    VkBuffer buffer;
    uint64_t size;
    void *mapped; /* non-NULL when the memory type is host-visible */
    bool dedicated; /* holds one buffer of DEDICATED_MIN bytes or more */
    uint32_t n_live;
    struct span *free_list;
    struct block *next;
};

struct unclip_vk {
    struct unclip_err err;
    struct unclip_vk_params params;
    struct unclip_device_info info;

    VkInstance instance;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceMemoryProperties memprops;
    uint32_t max_groups[3];

    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipelines[UNCLIP_SHADER_COUNT];
    struct spec_pipe *spec_pipes; /* specialised pipelines, newest first */

    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkDescriptorPool desc_pool;
    VkFence fence;
    bool recording;
    uint32_t batch_dispatches;
    uint64_t batch_work;
    bool lost;

    struct block *blocks;
    struct unclip_vk_buf *dummy; /* bound to unused binding slots */
    uint64_t mem_in_use, mem_peak;
    struct unclip_vk_stats stats;

    /* Validation (only when the layer is on): the messenger counts the layer's errors and
     * warnings; the next finish() fails on those not reported yet. */
    bool validation_on;
    VkDebugUtilsMessengerEXT messenger;
    _Atomic uint64_t val_messages; /* errors + warnings received      */
    uint64_t val_reported;         /* of which a failure already told */
    char val_first[512];           /* text of the first unreported one */

    /* shaderInt64 enabled at device creation (64-bit loads in the GEMM shaders). */
    bool shader_int64;

    /* Capture (unclip__vk_capture_begin/_end): dispatches go into `capture` instead of the
     * batch; a host-side operation meanwhile (finish, upload, download, freeing a buffer)
     * spoils the capture, which then fails at _end with capture_msg. */
    struct unclip_vk_graph *capture;
    bool capture_spoiled;
    char capture_msg[160];
    uint64_t next_serial;

    /* Memory budget (see unclip__vk_budget). */
    bool has_memory_budget;   /* VK_EXT_memory_budget enabled              */
    uint64_t budget_override; /* UNCLIP_DEVICE_BUDGET in bytes; 0: none    */
    uint64_t buf_bytes;       /* live buffers (blocks may hold free space) */
    uint64_t buf_peak;        /* highest buf_bytes since the last peak reset  */
    uint32_t n_blocks;
    uint64_t pool_bytes;      /* bytes of the shared (not dedicated) blocks  */
    struct block *stale;      /* staging blocks a timed-out copy may still use: freed with
                                 the context, after the device is idle */
    bool mem_trace;           /* UNCLIP_VK_MEM_TRACE=1: a stderr line per block */

    /* A finish() run by unclip__vk_buf_free() cannot return its failure: the pending work it
     * submitted is lost (or the cancel callback said stop), so the next dispatch, finish,
     * upload or download reports it instead of computing on missing results. */
    unclip_status deferred;
    char deferred_msg[UNCLIP_ERR_MAX];
};

static const char *
vk_result_str(VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult error";
    }
}

/* Maps a failed VkResult to a status and records `what`. */
static unclip_status
vk_fail(struct unclip_vk *vk, VkResult r, const char *what)
{
    unclip_status code = UNCLIP_E_VULKAN;
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
        code = UNCLIP_E_DEVICE_NOMEM;
    else if (r == VK_ERROR_OUT_OF_HOST_MEMORY)
        code = UNCLIP_E_NOMEM;
    else if (r == VK_ERROR_DEVICE_LOST) {
        code = UNCLIP_E_DEVICE_LOST;
        vk->lost = true;
    } else if (r == VK_TIMEOUT)
        code = UNCLIP_E_TIMEOUT;
    return unclip__fail(&vk->err, code, "%s failed: %s (%d)", what, vk_result_str(r), (int)r);
}

struct unclip_vk_params
unclip__vk_params_default(void)
{
    struct unclip_vk_params p = {0};
    p.device_index = -1;
    return p;
}

/* ---- device enumeration ---------------------------------------------------------------- */

/* Validation layer messages (errors and warnings only): printed, counted, and the first one
 * kept for the failure the next finish() reports. The layer calls this on the thread that
 * made the Vulkan call. */
static VKAPI_ATTR VkBool32 VKAPI_CALL
on_validation(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
              VkDebugUtilsMessageTypeFlagsEXT type,
              const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)type;
    struct unclip_vk *vk = user;
    const char *kind =
        (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) ? "error" : "warning";
    const char *text = data && data->pMessage ? data->pMessage : "(no text)";
    fprintf(stderr, "unclip: Vulkan validation %s: %s\n", kind, text);
    uint64_t n = atomic_fetch_add(&vk->val_messages, 1);
    if (n == vk->val_reported)
        snprintf(vk->val_first, sizeof vk->val_first, "%s: %s", kind, text);
    return VK_FALSE;
}

static VkDebugUtilsMessengerCreateInfoEXT
messenger_info(struct unclip_vk *vk)
{
    VkDebugUtilsMessengerCreateInfoEXT mi = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_validation,
        .pUserData = vk,
    };
    return mi;
}

static bool
instance_has_extension(const char *layer, const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkExtensionProperties *props = unclip__calloc(n, sizeof *props);
    bool found = false;
    if (props && vkEnumerateInstanceExtensionProperties(layer, &n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(props[i].extensionName, name) == 0;
    unclip__free(props);
    return found;
}

/* vk (may be NULL: device listing) receives the validation messages when the layer and
 * VK_EXT_debug_utils are present; vk->validation_on says whether they are. */
static unclip_status
instance_new(bool validation, struct unclip_vk *vk, VkInstance *out, struct unclip_err *err)
{
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "unclip",
        .applicationVersion = 1,
        .pEngineName = "libunclip",
        .engineVersion = 1,
        .apiVersion = VK_API_VERSION_1_1,
    };
    const char *layers[1] = {"VK_LAYER_KHRONOS_validation"};
    uint32_t n_layers = 0;
    if (validation) {
        uint32_t n = 0;
        vkEnumerateInstanceLayerProperties(&n, NULL);
        VkLayerProperties *props = unclip__calloc(n, sizeof *props);
        if (props && vkEnumerateInstanceLayerProperties(&n, props) == VK_SUCCESS) {
            for (uint32_t i = 0; i < n; i++)
                if (strcmp(props[i].layerName, layers[0]) == 0)
                    n_layers = 1;
        }
        unclip__free(props);
        if (n_layers == 0)
            fprintf(stderr, "unclip: Vulkan validation was asked for, but %s is not installed "
                    "(Debian: vulkan-validationlayers)\n", layers[0]);
    }
    /* The messenger also goes into the instance's pNext, so messages about instance creation
     * and destruction are counted too. */
    const char *exts[1] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    bool messenger = vk && n_layers && (instance_has_extension(layers[0], exts[0]) ||
                                        instance_has_extension(NULL, exts[0]));
    VkDebugUtilsMessengerCreateInfoEXT mi = messenger_info(vk);
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = messenger ? &mi : NULL,
        .pApplicationInfo = &app,
        .enabledLayerCount = n_layers,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = messenger ? 1 : 0,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, out);
    if (r != VK_SUCCESS)
        return unclip__fail(err, r == VK_ERROR_INCOMPATIBLE_DRIVER ? UNCLIP_E_NO_DEVICE
                                                                   : UNCLIP_E_VULKAN,
                            "vkCreateInstance failed: %s (%d); is a Vulkan driver installed "
                            "(e.g. mesa-vulkan-drivers)?",
                            vk_result_str(r), (int)r);
    if (messenger) {
        PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(*out, "vkCreateDebugUtilsMessengerEXT");
        if (create && create(*out, &mi, NULL, &vk->messenger) == VK_SUCCESS)
            vk->validation_on = true;
        else
            fprintf(stderr, "unclip: could not install the Vulkan validation messenger\n");
    }
    return UNCLIP_OK;
}

static void
describe_device(VkPhysicalDevice pd, int32_t index, struct unclip_device_info *info)
{
    memset(info, 0, sizeof *info);
    info->index = index;

    VkPhysicalDeviceSubgroupProperties sub = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 props2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                          .pNext = &sub};
    vkGetPhysicalDeviceProperties2(pd, &props2);
    const VkPhysicalDeviceProperties *p = &props2.properties;
    snprintf(info->name, sizeof info->name, "%s", p->deviceName);
    info->api_version = p->apiVersion;
    info->subgroup_size = sub.subgroupSize;
    info->max_shared_memory = p->limits.maxComputeSharedMemorySize;
    info->max_storage_buffer_range = p->limits.maxStorageBufferRange;
    switch (p->deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: info->type = UNCLIP_DEVICE_DISCRETE_GPU; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: info->type = UNCLIP_DEVICE_INTEGRATED_GPU; break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: info->type = UNCLIP_DEVICE_VIRTUAL_GPU; break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: info->type = UNCLIP_DEVICE_CPU; break;
    default: info->type = UNCLIP_DEVICE_OTHER; break;
    }

    if (p->apiVersion >= VK_API_VERSION_1_2) {
        VkPhysicalDeviceDriverProperties drv = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
        VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                          .pNext = &drv};
        vkGetPhysicalDeviceProperties2(pd, &p2);
        snprintf(info->driver, sizeof info->driver, "%.120s %.120s", drv.driverName, drv.driverInfo);
    }

    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES, .pNext = &f16};
    VkPhysicalDeviceFeatures2 feats = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                       .pNext = &s16};
    vkGetPhysicalDeviceFeatures2(pd, &feats);
    info->shader_float16 = f16.shaderFloat16;
    info->storage_16bit = s16.storageBuffer16BitAccess;

    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t h = 0; h < mp.memoryHeapCount; h++) {
        if (mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            info->device_local_bytes += mp.memoryHeaps[h].size;
    }
    for (uint32_t t = 0; t < mp.memoryTypeCount; t++) {
        if (mp.memoryTypes[t].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
            uint64_t s = mp.memoryHeaps[mp.memoryTypes[t].heapIndex].size;
            if (s > info->host_visible_bytes)
                info->host_visible_bytes = s;
        }
    }

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties qf[32];
    if (nq > 32)
        nq = 32;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
    for (uint32_t i = 0; i < nq; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
            info->has_compute_queue = true;

    info->usable = true;
    if (p->apiVersion < VK_API_VERSION_1_1) {
        info->usable = false;
        snprintf(info->why_unusable, sizeof info->why_unusable, "needs Vulkan 1.1");
    } else if (!info->has_compute_queue) {
        info->usable = false;
        snprintf(info->why_unusable, sizeof info->why_unusable, "no compute queue");
    } else if (info->max_storage_buffer_range < (16u << 20)) {
        info->usable = false;
        snprintf(info->why_unusable, sizeof info->why_unusable,
                 "storage buffer range below 16 MiB");
    }
}

static unclip_status
enumerate(VkInstance inst, VkPhysicalDevice **pds, struct unclip_device_info **infos,
          int32_t *n_out, struct unclip_err *err)
{
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(inst, &n, NULL);
    if (r != VK_SUCCESS)
        return unclip__fail(err, UNCLIP_E_VULKAN, "vkEnumeratePhysicalDevices failed: %s",
                            vk_result_str(r));
    VkPhysicalDevice *list = unclip__calloc(n ? n : 1, sizeof *list);
    struct unclip_device_info *inf = unclip__calloc(n ? n : 1, sizeof *inf);
    if (!list || !inf) {
        unclip__free(list);
        unclip__free(inf);
        return unclip__fail(err, UNCLIP_E_NOMEM, "out of memory listing %u devices", n);
    }
    r = vkEnumeratePhysicalDevices(inst, &n, list);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        unclip__free(list);
        unclip__free(inf);
        return unclip__fail(err, UNCLIP_E_VULKAN, "vkEnumeratePhysicalDevices failed: %s",
                            vk_result_str(r));
    }
    for (uint32_t i = 0; i < n; i++)
        describe_device(list[i], (int32_t)i, &inf[i]);
    *n_out = (int32_t)n;
    *infos = inf;
    if (pds)
        *pds = list;
    else
        unclip__free(list);
    return UNCLIP_OK;
}

unclip_status
unclip_devices_list(struct unclip_device_info **out, int32_t *n_out, char *errbuf,
                    size_t err_size)
{
    struct unclip_err err = {0};
    VkInstance inst;
    unclip_status st = instance_new(false, NULL, &inst, &err);
    if (st == UNCLIP_OK) {
        st = enumerate(inst, NULL, out, n_out, &err);
        vkDestroyInstance(inst, NULL);
    }
    if (st != UNCLIP_OK)
        unclip__err_copy(&err, errbuf, err_size);
    return st;
}

static int
type_rank(enum unclip_device_type t)
{
    switch (t) {
    case UNCLIP_DEVICE_DISCRETE_GPU: return 4;
    case UNCLIP_DEVICE_INTEGRATED_GPU: return 3;
    case UNCLIP_DEVICE_VIRTUAL_GPU: return 2;
    case UNCLIP_DEVICE_CPU: return 1;
    default: return 0;
    }
}

int32_t
unclip_device_pick(const struct unclip_device_info *list, int32_t n)
{
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++) {
        if (!list[i].usable)
            continue;
        if (best < 0 || type_rank(list[i].type) > type_rank(list[best].type) ||
            (type_rank(list[i].type) == type_rank(list[best].type) &&
             list[i].device_local_bytes > list[best].device_local_bytes))
            best = i;
    }
    return best;
}

static bool
name_matches(const char *name, const char *want)
{
    size_t nw = strlen(want);
    for (const char *p = name; *p; p++) {
        size_t k = 0;
        while (k < nw && p[k] && tolower((unsigned char)p[k]) == tolower((unsigned char)want[k]))
            k++;
        if (k == nw)
            return true;
    }
    return nw == 0;
}

/* ---- context ------------------------------------------------------------------------------ */

static unclip_status
create_device(struct unclip_vk *vk)
{
    VkPhysicalDevice *pds = NULL;
    struct unclip_device_info *infos = NULL;
    int32_t n = 0;
    unclip_status st = enumerate(vk->instance, &pds, &infos, &n, &vk->err);
    if (st != UNCLIP_OK)
        return st;

    int32_t pick = -1;
    if (vk->params.device_name) {
        for (int32_t i = 0; i < n && pick < 0; i++)
            if (infos[i].usable && name_matches(infos[i].name, vk->params.device_name))
                pick = i;
        if (pick < 0)
            st = unclip__fail(&vk->err, UNCLIP_E_NO_DEVICE,
                              "no usable Vulkan device whose name contains '%s' (%d devices; "
                              "run 'unclip devices')",
                              vk->params.device_name, (int)n);
    } else if (vk->params.device_index >= 0) {
        pick = vk->params.device_index;
        if (pick >= n)
            st = unclip__fail(&vk->err, UNCLIP_E_NO_DEVICE,
                              "device index %d out of range: %d Vulkan devices", (int)pick,
                              (int)n);
        else if (!infos[pick].usable)
            st = unclip__fail(&vk->err, UNCLIP_E_UNSUPPORTED, "device %d (%s) is unusable: %s",
                              (int)pick, infos[pick].name, infos[pick].why_unusable);
    } else {
        pick = unclip_device_pick(infos, n);
        if (pick < 0)
            st = unclip__fail(&vk->err, UNCLIP_E_NO_DEVICE,
                              n ? "none of the %d Vulkan devices is usable"
                                : "no Vulkan device found (%d); install a driver such as "
                                  "mesa-vulkan-drivers",
                              (int)n);
    }
    if (st != UNCLIP_OK) {
        unclip__free(pds);
        unclip__free(infos);
        return st;
    }
    vk->phys = pds[pick];
    vk->info = infos[pick];
    unclip__free(pds);
    unclip__free(infos);

    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(vk->phys, &props);
    for (int i = 0; i < 3; i++)
        vk->max_groups[i] = props.limits.maxComputeWorkGroupCount[i];
    vkGetPhysicalDeviceMemoryProperties(vk->phys, &vk->memprops);

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(vk->phys, &nq, NULL);
    VkQueueFamilyProperties qf[32];
    if (nq > 32)
        nq = 32;
    vkGetPhysicalDeviceQueueFamilyProperties(vk->phys, &nq, qf);
    /* Prefer a compute-only family (async compute on GPUs), else any with compute. */
    int32_t fam = -1;
    for (uint32_t i = 0; i < nq; i++)
        if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
            fam = (int32_t)i;
    for (uint32_t i = 0; i < nq && fam < 0; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
            fam = (int32_t)i;
    vk->queue_family = (uint32_t)fam;

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = vk->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    /* fp16 weights are read as packed uint32 and unpacked in shaders, so no 16-bit feature
     * is required; enable the ones present for kernels that can use them. */
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
        .shaderFloat16 = vk->info.shader_float16};
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
        .pNext = vk->info.api_version >= VK_API_VERSION_1_2 ? &f16 : NULL,
        .storageBuffer16BitAccess = vk->info.storage_16bit};
    /* shaderInt64 lets the GEMM shaders (linear, conv2d) load through 64-bit components: on
     * lavapipe each component a lane loads is a scalar loop over the lanes, so halving the
     * component count is 1.3-1.6x faster; on GPUs it is a plain 64-bit load. Enabled when
     * present (lavapipe, NVIDIA, AMD, Intel all have it); UNCLIP_NO_INT64=1 leaves it off to
     * run and test the vec4 path. */
    VkPhysicalDeviceFeatures base;
    vkGetPhysicalDeviceFeatures(vk->phys, &base);
    const char *no64 = getenv("UNCLIP_NO_INT64");
    vk->shader_int64 = base.shaderInt64 && !(no64 && no64[0] && strcmp(no64, "0") != 0);
    VkPhysicalDeviceFeatures2 feats2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &s16,
        .features = {.shaderInt64 = vk->shader_int64 ? VK_TRUE : VK_FALSE}};
    /* VK_EXT_memory_budget (when the driver has it) gives the budget of unclip__vk_budget. */
    const char *dev_exts[1] = {VK_EXT_MEMORY_BUDGET_EXTENSION_NAME};
    uint32_t n_ext = 0;
    if (vkEnumerateDeviceExtensionProperties(vk->phys, NULL, &n_ext, NULL) == VK_SUCCESS &&
        n_ext > 0) {
        VkExtensionProperties *ep = unclip__calloc(n_ext, sizeof *ep);
        if (ep && vkEnumerateDeviceExtensionProperties(vk->phys, NULL, &n_ext, ep) == VK_SUCCESS)
            for (uint32_t i = 0; i < n_ext; i++)
                if (!strcmp(ep[i].extensionName, dev_exts[0]))
                    vk->has_memory_budget = true;
        unclip__free(ep);
    }
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &feats2,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
        .enabledExtensionCount = vk->has_memory_budget ? 1 : 0,
        .ppEnabledExtensionNames = dev_exts,
    };
    VkResult r = vkCreateDevice(vk->phys, &dci, NULL, &vk->device);
    if (r != VK_SUCCESS)
        return vk_fail(vk, r, "vkCreateDevice");
    vkGetDeviceQueue(vk->device, vk->queue_family, 0, &vk->queue);
    return UNCLIP_OK;
}

/* One command buffer (from the context's pool) and a descriptor pool for the sets of
 * BATCH_DISPATCHES dispatches: the context's live batch and each segment of a recorded graph
 * are made by this one function, so a segment is bounded exactly like a live submission.
 * On failure nothing is left allocated (both handles VK_NULL_HANDLE). */
static unclip_status
cmd_batch_new(struct unclip_vk *vk, VkCommandBuffer *cmd, VkDescriptorPool *pool)
{
    *cmd = VK_NULL_HANDLE;
    *pool = VK_NULL_HANDLE;
    VkCommandBufferAllocateInfo cai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vk->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VkResult r = vkAllocateCommandBuffers(vk->device, &cai, cmd);
    if (r != VK_SUCCESS) {
        *cmd = VK_NULL_HANDLE;
        return vk_fail(vk, r, "vkAllocateCommandBuffers");
    }
    VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                               .descriptorCount = BATCH_DISPATCHES * UNCLIP_VK_MAX_BINDS};
    VkDescriptorPoolCreateInfo dpci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = BATCH_DISPATCHES,
        .poolSizeCount = 1,
        .pPoolSizes = &ps,
    };
    r = vkCreateDescriptorPool(vk->device, &dpci, NULL, pool);
    if (r != VK_SUCCESS) {
        vkFreeCommandBuffers(vk->device, vk->cmd_pool, 1, cmd);
        *cmd = VK_NULL_HANDLE;
        *pool = VK_NULL_HANDLE;
        return vk_fail(vk, r, "vkCreateDescriptorPool");
    }
    return UNCLIP_OK;
}

static unclip_status
create_layouts(struct unclip_vk *vk)
{
    VkDescriptorSetLayoutBinding b[UNCLIP_VK_MAX_BINDS];
    for (uint32_t i = 0; i < UNCLIP_VK_MAX_BINDS; i++) {
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    }
    VkDescriptorSetLayoutCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = UNCLIP_VK_MAX_BINDS,
        .pBindings = b,
    };
    VkResult r = vkCreateDescriptorSetLayout(vk->device, &dci, NULL, &vk->dsl);
    if (r != VK_SUCCESS)
        return vk_fail(vk, r, "vkCreateDescriptorSetLayout");
    VkPushConstantRange pcr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
                               .offset = 0,
                               .size = UNCLIP_VK_MAX_PUSH};
    VkPipelineLayoutCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &vk->dsl,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pcr,
    };
    r = vkCreatePipelineLayout(vk->device, &pci, NULL, &vk->layout);
    if (r != VK_SUCCESS)
        return vk_fail(vk, r, "vkCreatePipelineLayout");

    VkCommandPoolCreateInfo cpci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = vk->queue_family,
    };
    r = vkCreateCommandPool(vk->device, &cpci, NULL, &vk->cmd_pool);
    if (r != VK_SUCCESS)
        return vk_fail(vk, r, "vkCreateCommandPool");
    unclip_status st = cmd_batch_new(vk, &vk->cmd, &vk->desc_pool);
    if (st != UNCLIP_OK)
        return st;
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    r = vkCreateFence(vk->device, &fci, NULL, &vk->fence);
    if (r != VK_SUCCESS)
        return vk_fail(vk, r, "vkCreateFence");
    return UNCLIP_OK;
}

unclip_status
unclip__vk_new(const struct unclip_vk_params *params, struct unclip_vk **out,
               struct unclip_err *err)
{
    struct unclip_vk *vk = unclip__calloc(1, sizeof *vk);
    if (!vk)
        return unclip__fail(err, UNCLIP_E_NOMEM, "out of memory creating the Vulkan context");
    vk->params = params ? *params : unclip__vk_params_default();
    const char *ew = getenv("UNCLIP_WORK_BOUND");
    if (!vk->params.work_bound && ew && ew[0])
        vk->params.work_bound = strtoull(ew, NULL, 10);
    if (!vk->params.work_bound)
        vk->params.work_bound = UNCLIP_VK_WORK_BOUND;
    if (!vk->params.fence_timeout_ms)
        vk->params.fence_timeout_ms = 60000;
    /* Test and CI switches (see vk.h): UNCLIP_VALIDATION=1 turns the layer on for every
     * context; UNCLIP_DEVICE_BUDGET=<bytes>[K|M|G] pretends the device has that much memory. */
    const char *ev = getenv("UNCLIP_VALIDATION");
    if (ev && ev[0] && strcmp(ev, "0") != 0)
        vk->params.validation = true;
    const char *et = getenv("UNCLIP_VK_MEM_TRACE");
    vk->mem_trace = et && et[0] && strcmp(et, "0") != 0;
    const char *eb = getenv("UNCLIP_DEVICE_BUDGET");
    if (eb && eb[0]) {
        char *end = NULL;
        unsigned long long v = strtoull(eb, &end, 10);
        int shift = 0;
        if (end && (*end == 'K' || *end == 'k'))
            shift = 10;
        else if (end && (*end == 'M' || *end == 'm'))
            shift = 20;
        else if (end && (*end == 'G' || *end == 'g'))
            shift = 30;
        if (end == eb || (shift && end[1]) || (!shift && *end) || v == 0 || v > (1ull << 40)) {
            unclip__fail(err, UNCLIP_E_ARG, "UNCLIP_DEVICE_BUDGET='%.40s': expected a positive "
                         "number of bytes, optionally with K, M or G", eb);
            unclip__free(vk);
            return UNCLIP_E_ARG;
        }
        vk->budget_override = (uint64_t)v << shift;
    }

    unclip_status st = instance_new(vk->params.validation, vk, &vk->instance, &vk->err);
    if (st == UNCLIP_OK)
        st = create_device(vk);
    if (st == UNCLIP_OK)
        st = create_layouts(vk);
    if (st == UNCLIP_OK)
        st = unclip__vk_buf_new(vk, BUF_ALIGN, &vk->dummy);
    if (st != UNCLIP_OK) {
        if (err) {
            err->code = st;
            memcpy(err->msg, vk->err.msg, sizeof err->msg);
        }
        unclip__vk_free(vk);
        return st;
    }
    *out = vk;
    return UNCLIP_OK;
}

static void block_destroy(struct unclip_vk *vk, struct block *b);
static unclip_status validation_check(struct unclip_vk *vk);
static unclip_status capture_spoil(struct unclip_vk *vk, const char *what);

/* Reports (once) the failure of work submitted while a buffer was freed. */
static unclip_status
take_deferred(struct unclip_vk *vk)
{
    unclip_status st = vk->deferred;
    if (st == UNCLIP_OK)
        return UNCLIP_OK;
    vk->deferred = UNCLIP_OK;
    if (st == UNCLIP_E_CANCELLED || st == UNCLIP_E_DEVICE_LOST)
        return unclip__fail(&vk->err, st, "%s", vk->deferred_msg);
    return unclip__fail(&vk->err, st, "%s (work submitted when a buffer was freed; its results "
                        "are lost)", vk->deferred_msg);
}

void
unclip__vk_free(struct unclip_vk *vk)
{
    if (!vk)
        return;
    if (vk->device) {
        vkDeviceWaitIdle(vk->device);
        for (int i = 0; i < UNCLIP_SHADER_COUNT; i++)
            if (vk->pipelines[i])
                vkDestroyPipeline(vk->device, vk->pipelines[i], NULL);
        while (vk->spec_pipes) {
            struct spec_pipe *sp = vk->spec_pipes;
            vk->spec_pipes = sp->next;
            vkDestroyPipeline(vk->device, sp->pipe, NULL);
            unclip__free(sp);
        }
        if (vk->dummy)
            unclip__free(vk->dummy->spare);
        unclip__free(vk->dummy);
        while (vk->blocks) {
            struct block *b = vk->blocks;
            vk->blocks = b->next;
            block_destroy(vk, b);
        }
        while (vk->stale) {
            struct block *b = vk->stale;
            vk->stale = b->next;
            block_destroy(vk, b);
        }
        if (vk->fence)
            vkDestroyFence(vk->device, vk->fence, NULL);
        if (vk->desc_pool)
            vkDestroyDescriptorPool(vk->device, vk->desc_pool, NULL);
        if (vk->cmd_pool)
            vkDestroyCommandPool(vk->device, vk->cmd_pool, NULL);
        if (vk->layout)
            vkDestroyPipelineLayout(vk->device, vk->layout, NULL);
        if (vk->dsl)
            vkDestroyDescriptorSetLayout(vk->device, vk->dsl, NULL);
        vkDestroyDevice(vk->device, NULL);
    }
    if (vk->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(vk->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy)
            destroy(vk->instance, vk->messenger, NULL);
    }
    if (vk->instance)
        vkDestroyInstance(vk->instance, NULL);
    unclip__free(vk);
}

struct unclip_err *
unclip__vk_err(struct unclip_vk *vk)
{
    return &vk->err;
}

const struct unclip_device_info *
unclip__vk_info(const struct unclip_vk *vk)
{
    return &vk->info;
}

bool
unclip__vk_shader_int64(const struct unclip_vk *vk)
{
    return vk->shader_int64;
}

void
unclip__vk_set_cancel(struct unclip_vk *vk, bool (*cb)(void *), void *user_data)
{
    vk->deferred = UNCLIP_OK; /* a new job: nothing read results lost in the previous one */
    vk->params.cancel_cb = cb;
    vk->params.user_data = user_data;
}

uint64_t
unclip__vk_mem_in_use(const struct unclip_vk *vk)
{
    return vk->mem_in_use;
}

uint64_t
unclip__vk_mem_peak(const struct unclip_vk *vk)
{
    return vk->mem_peak;
}

void
unclip__vk_mem_reset_peak(struct unclip_vk *vk)
{
    vk->mem_peak = vk->mem_in_use;
    vk->buf_peak = vk->buf_bytes;
    if (vk->mem_trace)
        fprintf(stderr, "vk-mem: peak reset: %u blocks = %.2f MiB, live buffers %.2f MiB\n",
                vk->n_blocks, (double)vk->mem_in_use / 1048576.0,
                (double)vk->buf_bytes / 1048576.0);
}

void
unclip__vk_mem_stats(const struct unclip_vk *vk, struct unclip_vk_mem_stats *out)
{
    *out = (struct unclip_vk_mem_stats){
        .blocks = vk->mem_in_use,
        .blocks_peak = vk->mem_peak,
        .buffers = vk->buf_bytes,
        .buffers_peak = vk->buf_peak,
        .pool = vk->pool_bytes,
        .n_blocks = vk->n_blocks,
    };
}

/* MemAvailable of /proc/meminfo in bytes; 0 when unknown. */
static uint64_t
meminfo_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024u;
}

uint64_t
unclip__vk_budget(const struct unclip_vk *vk, uint64_t *available, const char **source)
{
    /* Free space inside our blocks serves new buffers too: count live buffers as used. */
    uint64_t in_use = vk->buf_bytes, slack = vk->mem_in_use - vk->buf_bytes;
    uint64_t budget = 0, avail = 0;
    const char *src;
    uint64_t free_ram;
    if (vk->budget_override) {
        src = "UNCLIP_DEVICE_BUDGET";
        budget = vk->budget_override;
        avail = budget > in_use ? budget - in_use : 0;
    } else if (vk->has_memory_budget) {
        VkPhysicalDeviceMemoryBudgetPropertiesEXT mb = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
        VkPhysicalDeviceMemoryProperties2 mp = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2, .pNext = &mb};
        vkGetPhysicalDeviceMemoryProperties2(vk->phys, &mp);
        uint64_t usage = 0;
        for (uint32_t h = 0; h < mp.memoryProperties.memoryHeapCount; h++)
            if (mp.memoryProperties.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) {
                budget += mb.heapBudget[h];
                usage += mb.heapUsage[h];
            }
        src = "VK_EXT_memory_budget";
        avail = (budget > usage ? budget - usage : 0) + slack;
    } else if (vk->info.type == UNCLIP_DEVICE_CPU && (free_ram = meminfo_available()) > 0) {
        /* A CPU driver's "device memory" is the process's own memory, and its heap size is
         * only nominal (lavapipe says 2 GiB whatever the machine has): what matters is the
         * free RAM. Our blocks are already counted as used there. */
        src = "80% of the free system memory (CPU device)";
        avail = free_ram / 5 * 4 + slack;
        budget = avail + in_use;
    } else {
        uint64_t heap = vk->info.device_local_bytes ? vk->info.device_local_bytes
                                                    : vk->info.host_visible_bytes;
        src = "80% of the device-local heap";
        budget = heap / 5 * 4;
        avail = budget > in_use ? budget - in_use : 0;
    }
    if (available)
        *available = avail;
    if (source)
        *source = src;
    return budget;
}

unclip_status
unclip__vk_budget_check(struct unclip_vk *vk, const char *what, uint64_t weight_bytes,
                        uint64_t activation_bytes)
{
    uint64_t avail = 0;
    const char *src = "";
    uint64_t budget = unclip__vk_budget(vk, &avail, &src);
    uint64_t need = weight_bytes + activation_bytes;
    if (need <= avail)
        return UNCLIP_OK;
    const double MiB = 1048576.0;
    return unclip__fail(&vk->err, UNCLIP_E_DEVICE_NOMEM,
                        "%s needs %.1f MiB of device memory (weights %.1f MiB + activations "
                        "%.1f MiB) but only %.1f MiB is available on %s: budget %.1f MiB from "
                        "%s, %.1f MiB in use by this context",
                        what, (double)need / MiB, (double)weight_bytes / MiB,
                        (double)activation_bytes / MiB, (double)avail / MiB, vk->info.name,
                        (double)budget / MiB, src, (double)vk->buf_bytes / MiB);
}

void
unclip__vk_stats(const struct unclip_vk *vk, struct unclip_vk_stats *out)
{
    *out = vk->stats;
}

uint64_t
unclip__vk_work_bound(const struct unclip_vk *vk)
{
    return vk->params.work_bound;
}

uint32_t
unclip__vk_max_groups(const struct unclip_vk *vk, int dim)
{
    return vk->max_groups[dim];
}

/* ---- memory ------------------------------------------------------------------------------- */

static int32_t
find_memory_type(const struct unclip_vk *vk, uint32_t type_bits, VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < vk->memprops.memoryTypeCount; i++)
        if ((type_bits & (1u << i)) && (vk->memprops.memoryTypes[i].propertyFlags & want) == want)
            return (int32_t)i;
    return -1;
}

static void
block_destroy(struct unclip_vk *vk, struct block *b)
{
    while (b->free_list) {
        struct span *s = b->free_list;
        b->free_list = s->next;
        unclip__free(s);
    }
    if (b->mapped)
        vkUnmapMemory(vk->device, b->mem);
    if (b->buffer)
        vkDestroyBuffer(vk->device, b->buffer, NULL);
    if (b->mem) {
        vkFreeMemory(vk->device, b->mem, NULL);
        vk->mem_in_use -= b->size;
        vk->n_blocks--;
        if (!b->dedicated)
            vk->pool_bytes -= b->size;
    }
    unclip__free(b);
}

/* A new block of `size` bytes: shared (pool) or dedicated to one buffer or a staging copy. */
static unclip_status
block_new(struct unclip_vk *vk, uint64_t size, bool shared, struct block **out)
{
    if (unclip__fault_hit(UNCLIP_FAULT_DEVICE_ALLOC))
        return unclip__fail(&vk->err, UNCLIP_E_DEVICE_NOMEM,
                            "out of device memory allocating %llu bytes (injected fault)",
                            (unsigned long long)size);
    struct block *b = unclip__calloc(1, sizeof *b);
    struct span *s = unclip__calloc(1, sizeof *s);
    if (!b || !s) {
        unclip__free(b);
        unclip__free(s);
        return unclip__fail(&vk->err, UNCLIP_E_NOMEM, "out of host memory");
    }
    b->size = size;
    b->dedicated = !shared;
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = vkCreateBuffer(vk->device, &bci, NULL, &b->buffer);
    if (r != VK_SUCCESS) {
        unclip__free(s);
        unclip__free(b);
        return vk_fail(vk, r, "vkCreateBuffer");
    }
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->device, b->buffer, &req);
    /* Device-local first (host-visible too when the device has such a type, as CPUs and
     * integrated GPUs do), then any host-visible type. */
    const VkMemoryPropertyFlags prefs[3] = {
        VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
            VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
        VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
    };
    r = VK_ERROR_OUT_OF_DEVICE_MEMORY;
    for (int i = 0; i < 3 && r != VK_SUCCESS; i++) {
        int32_t t = find_memory_type(vk, req.memoryTypeBits, prefs[i]);
        if (t < 0)
            continue;
        VkMemoryAllocateInfo mai = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .allocationSize = req.size,
            .memoryTypeIndex = (uint32_t)t,
        };
        r = vkAllocateMemory(vk->device, &mai, NULL, &b->mem);
        if (r == VK_SUCCESS &&
            (vk->memprops.memoryTypes[t].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)) {
            VkResult rm = vkMapMemory(vk->device, b->mem, 0, VK_WHOLE_SIZE, 0, &b->mapped);
            if (rm != VK_SUCCESS)
                b->mapped = NULL;
        }
    }
    if (r != VK_SUCCESS) {
        b->mem = VK_NULL_HANDLE;
        unclip__free(s);
        block_destroy(vk, b);
        vk_fail(vk, r, "vkAllocateMemory");
        return unclip__fail(&vk->err, UNCLIP_E_DEVICE_NOMEM,
                            "out of device memory: could not allocate %.1f MiB (%.1f MiB in use "
                            "on %s)",
                            (double)size / 1048576.0, (double)vk->mem_in_use / 1048576.0,
                            vk->info.name);
    }
    vk->mem_in_use += size;
    vk->n_blocks++;
    if (shared)
        vk->pool_bytes += size;
    if (vk->mem_in_use > vk->mem_peak)
        vk->mem_peak = vk->mem_in_use;
    if (vk->mem_trace)
        fprintf(stderr, "vk-mem: +%s block %.2f MiB: %u blocks = %.2f MiB (pool %.2f MiB), "
                "live buffers %.2f MiB (peak %.2f MiB)\n", shared ? "pool" : "dedicated",
                (double)size / 1048576.0, vk->n_blocks, (double)vk->mem_in_use / 1048576.0,
                (double)vk->pool_bytes / 1048576.0, (double)vk->buf_bytes / 1048576.0,
                (double)vk->mem_peak / 1048576.0);
    r = vkBindBufferMemory(vk->device, b->buffer, b->mem, 0);
    if (r != VK_SUCCESS) {
        unclip__free(s);
        block_destroy(vk, b);
        return vk_fail(vk, r, "vkBindBufferMemory");
    }
    s->offset = 0;
    s->size = size;
    b->free_list = s;
    *out = b;
    return UNCLIP_OK;
}

/* Takes `size` bytes from the start of the free span *pp of b. */
static uint64_t
span_take(struct span **pp, uint64_t size)
{
    struct span *s = *pp;
    uint64_t offset = s->offset;
    s->offset += size;
    s->size -= size;
    if (s->size == 0) {
        *pp = s->next;
        unclip__free(s);
    }
    return offset;
}

/* Best fit over the shared blocks: the smallest free span that holds `size` (the first of
 * equal ones), so big free ranges stay whole for big requests. false when none fits. */
static bool
pool_take(struct unclip_vk *vk, uint64_t size, struct block **bout, uint64_t *offset)
{
    struct block *best_b = NULL;
    struct span **best = NULL;
    for (struct block *b = vk->blocks; b; b = b->next) {
        if (b->dedicated)
            continue;
        for (struct span **pp = &b->free_list; *pp; pp = &(*pp)->next)
            if ((*pp)->size >= size && (!best || (*pp)->size < (*best)->size)) {
                best = pp;
                best_b = b;
            }
    }
    if (!best)
        return false;
    *offset = span_take(best, size);
    *bout = best_b;
    return true;
}

/* Returns a range to the block's free list, merging neighbours; *spare is taken (set to
 * NULL) when a new node is needed. */
static void
block_give(struct block *b, uint64_t offset, uint64_t size, struct span **spare)
{
    struct span **pp = &b->free_list;
    while (*pp && (*pp)->offset < offset)
        pp = &(*pp)->next;
    struct span *next = *pp;
    /* predecessor: the span whose next pointer is pp */
    struct span *prev = NULL;
    for (struct span *s = b->free_list; s && s != next; s = s->next)
        prev = s;
    if (prev && prev->offset + prev->size == offset) {
        prev->size += size;
        if (next && prev->offset + prev->size == next->offset) {
            prev->size += next->size;
            prev->next = next->next;
            unclip__free(next);
        }
        return;
    }
    if (next && offset + size == next->offset) {
        next->offset = offset;
        next->size += size;
        return;
    }
    struct span *s = *spare;
    *spare = NULL;
    s->offset = offset;
    s->size = size;
    s->next = next;
    *pp = s;
}

unclip_status
unclip__vk_buf_new(struct unclip_vk *vk, uint64_t bytes, struct unclip_vk_buf **out)
{
    if (vk->lost)
        return unclip__fail(&vk->err, UNCLIP_E_DEVICE_LOST,
                            "the Vulkan device was lost; recreate the context");
    if (bytes == 0 || bytes > (1ull << 48))
        return unclip__fail(&vk->err, UNCLIP_E_ARG, "buffer size %llu out of range",
                            (unsigned long long)bytes);
    /* Every buffer counts as a device allocation for fault injection, not only the 64 MiB
     * blocks behind them: most buffers are carved out of an existing block, and each of
     * their callers needs its failure path tested. */
    if (unclip__fault_hit(UNCLIP_FAULT_DEVICE_ALLOC))
        return unclip__fail(&vk->err, UNCLIP_E_DEVICE_NOMEM,
                            "out of device memory allocating a buffer of %llu bytes (injected "
                            "fault)", (unsigned long long)bytes);
    uint64_t size = (bytes + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN;
    struct unclip_vk_buf *buf = unclip__calloc(1, sizeof *buf);
    if (buf)
        buf->serial = ++vk->next_serial;
    if (buf)
        buf->spare = unclip__calloc(1, sizeof *buf->spare);
    if (!buf || !buf->spare) {
        unclip__free(buf);
        return unclip__fail(&vk->err, UNCLIP_E_NOMEM, "out of host memory");
    }
    bool shared = size < DEDICATED_MIN;
    if (!shared || !pool_take(vk, size, &buf->block, &buf->offset)) {
        struct block *b;
        uint64_t bsize = size;
        if (shared) {
            bsize = (vk->pool_bytes / 2 + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
            bsize = bsize < POOL_MIN_BLOCK ? POOL_MIN_BLOCK
                    : bsize > POOL_MAX_BLOCK ? POOL_MAX_BLOCK : bsize;
        }
        unclip_status st = block_new(vk, bsize, shared, &b);
        if (st != UNCLIP_OK) {
            unclip__free(buf->spare);
            unclip__free(buf);
            return st;
        }
        b->next = vk->blocks;
        vk->blocks = b;
        buf->offset = span_take(&b->free_list, size);
        buf->block = b;
    }
    buf->vk = vk;
    buf->size = size;
    buf->block->n_live++;
    vk->buf_bytes += size;
    if (vk->buf_bytes > vk->buf_peak)
        vk->buf_peak = vk->buf_bytes;
    *out = buf;
    return UNCLIP_OK;
}

unclip_status
unclip__vk_buf_view(struct unclip_vk_buf *parent, uint64_t offset, uint64_t bytes,
                    struct unclip_vk_buf **out)
{
    struct unclip_vk *vk = parent->vk;
    uint64_t size = (bytes + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN;
    if (offset % BUF_ALIGN || bytes == 0 || offset > parent->size ||
        size > parent->size - offset)
        return unclip__fail(&vk->err, UNCLIP_E_INTERNAL,
                            "buffer view [%llu, +%llu) of a buffer of %llu bytes: the offset "
                            "must be a multiple of %u and the view inside the buffer",
                            (unsigned long long)offset, (unsigned long long)bytes,
                            (unsigned long long)parent->size, BUF_ALIGN);
    struct unclip_vk_buf *v = unclip__calloc(1, sizeof *v);
    if (!v)
        return unclip__fail(&vk->err, UNCLIP_E_NOMEM, "out of host memory for a buffer view");
    v->vk = vk;
    v->block = parent->block;
    v->offset = parent->offset + offset;
    v->size = size;
    v->view = true;
    v->serial = ++vk->next_serial;
    *out = v;
    return UNCLIP_OK;
}

uint64_t
unclip__vk_buf_size(const struct unclip_vk_buf *buf)
{
    return buf->size;
}

uint64_t
unclip__vk_buf_bindable(const struct unclip_vk_buf *buf)
{
    uint64_t r = buf->vk->info.max_storage_buffer_range;
    return buf->size < r ? buf->size : r;
}

void
unclip__vk_buf_free(struct unclip_vk_buf *buf)
{
    if (!buf)
        return;
    struct unclip_vk *vk = buf->vk;
    if (vk->capture)
        capture_spoil(vk, "freeing a buffer"); /* the graph may use it: never replayed */
    if (buf->view) {
        /* No memory to give back (the parent owns it), so no pending work to wait for. */
        unclip__free(buf);
        return;
    }
    /* A pending dispatch may still use this range; finish before reuse. */
    if (vk->recording) {
        unclip_status st = unclip__vk_finish(vk);
        if (st != UNCLIP_OK && vk->deferred == UNCLIP_OK) {
            vk->deferred = st;
            memcpy(vk->deferred_msg, vk->err.msg, sizeof vk->deferred_msg);
        }
    }
    struct block *b = buf->block;
    block_give(b, buf->offset, buf->size, &buf->spare);
    vk->buf_bytes -= buf->size;
    b->n_live--;
    if (b->n_live == 0) {
        struct block **pp = &vk->blocks;
        while (*pp != b)
            pp = &(*pp)->next;
        *pp = b->next;
        block_destroy(vk, b);
    }
    unclip__free(buf->spare);
    unclip__free(buf);
}

/* Runs a one-off transfer between a host-visible staging block and buf (GPU without
 * host-visible device memory). to_device selects the direction. */
static unclip_status
staged_copy(struct unclip_vk *vk, const struct unclip_vk_buf *buf, uint64_t offset, void *host,
            uint64_t bytes, bool to_device)
{
    struct block *stage;
    unclip_status st = block_new(vk, bytes, false, &stage);
    if (st != UNCLIP_OK)
        return st;
    if (!stage->mapped) {
        block_destroy(vk, stage);
        return unclip__fail(&vk->err, UNCLIP_E_UNSUPPORTED,
                            "device %s has no host-visible memory for staging", vk->info.name);
    }
    if (to_device)
        memcpy(stage->mapped, host, bytes);
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VkResult r = vkBeginCommandBuffer(vk->cmd, &bi);
    if (r == VK_SUCCESS) {
        VkBufferCopy region = {
            .srcOffset = to_device ? 0 : buf->offset + offset,
            .dstOffset = to_device ? buf->offset + offset : 0,
            .size = bytes,
        };
        vkCmdCopyBuffer(vk->cmd, to_device ? stage->buffer : buf->block->buffer,
                        to_device ? buf->block->buffer : stage->buffer, 1, &region);
        r = vkEndCommandBuffer(vk->cmd);
    }
    bool timed_out = false, in_flight = false;
    if (r == VK_SUCCESS) {
        VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                           .commandBufferCount = 1,
                           .pCommandBuffers = &vk->cmd};
        r = vkQueueSubmit(vk->queue, 1, &si, vk->fence);
        if (r == VK_SUCCESS) {
            r = vkWaitForFences(vk->device, 1, &vk->fence, VK_TRUE,
                                (uint64_t)vk->params.fence_timeout_ms * 1000000ull);
            if (r == VK_TIMEOUT) {
                /* The copy may still be running: wait for it (as submit_wait does) before
                 * the staging memory is freed and the command buffer reset, so a late copy
                 * cannot write into freed or reused memory. The call still fails. */
                timed_out = true;
                r = vkWaitForFences(vk->device, 1, &vk->fence, VK_TRUE, UINT64_MAX);
            }
            /* A failed wait (device lost) leaves the copy's state unknown. */
            in_flight = r != VK_SUCCESS;
            if (!in_flight)
                vkResetFences(vk->device, 1, &vk->fence);
        }
    }
    if (!in_flight)
        vkResetCommandBuffer(vk->cmd, 0);
    if (r == VK_SUCCESS && !timed_out && !to_device)
        memcpy(host, stage->mapped, bytes);
    if (in_flight) {
        /* Kept, not freed: the device may still use it. unclip__vk_free destroys it after
         * vkDeviceWaitIdle. The command buffer may still be pending too, so the context
         * takes no more work (as after a device loss). */
        stage->next = vk->stale;
        vk->stale = stage;
        unclip_status e = vk_fail(vk, r, "staging copy");
        vk->lost = true;
        return e;
    }
    block_destroy(vk, stage);
    if (timed_out && r == VK_SUCCESS)
        return unclip__fail(&vk->err, UNCLIP_E_TIMEOUT,
                            "a staging copy of %llu bytes did not finish within %u ms",
                            (unsigned long long)bytes, vk->params.fence_timeout_ms);
    return r == VK_SUCCESS ? UNCLIP_OK : vk_fail(vk, r, "staging copy");
}

static unclip_status
check_range(struct unclip_vk *vk, const struct unclip_vk_buf *buf, uint64_t offset,
            uint64_t bytes, const char *what)
{
    if (vk->lost)
        return unclip__fail(&vk->err, UNCLIP_E_DEVICE_LOST,
                            "the Vulkan device was lost; recreate the context");
    if (!buf || offset > buf->size || bytes > buf->size - offset)
        return unclip__fail(&vk->err, UNCLIP_E_ARG,
                            "%s: range [%llu, +%llu) outside a buffer of %llu bytes", what,
                            (unsigned long long)offset, (unsigned long long)bytes,
                            (unsigned long long)(buf ? buf->size : 0));
    return UNCLIP_OK;
}

unclip_status
unclip__vk_upload(struct unclip_vk *vk, struct unclip_vk_buf *buf, uint64_t offset,
                  const void *src, uint64_t bytes)
{
    unclip_status st = check_range(vk, buf, offset, bytes, "upload");
    if (st == UNCLIP_OK && vk->capture)
        return capture_spoil(vk, "upload");
    if (st == UNCLIP_OK)
        st = take_deferred(vk);
    if (st != UNCLIP_OK || bytes == 0)
        return st;
    if (vk->recording && (st = unclip__vk_finish(vk)) != UNCLIP_OK)
        return st;
    if (buf->block->mapped) {
        memcpy((char *)buf->block->mapped + buf->offset + offset, src, bytes);
        return UNCLIP_OK;
    }
    return staged_copy(vk, buf, offset, (void *)src, bytes, true);
}

unclip_status
unclip__vk_download(struct unclip_vk *vk, const struct unclip_vk_buf *buf, uint64_t offset,
                    void *dst, uint64_t bytes)
{
    unclip_status st = check_range(vk, buf, offset, bytes, "download");
    if (st == UNCLIP_OK && vk->capture)
        return capture_spoil(vk, "download");
    if (st == UNCLIP_OK)
        st = take_deferred(vk);
    if (st != UNCLIP_OK || bytes == 0)
        return st;
    if (vk->recording && (st = unclip__vk_finish(vk)) != UNCLIP_OK)
        return st;
    if (buf->block->mapped) {
        memcpy(dst, (const char *)buf->block->mapped + buf->offset + offset, bytes);
        return vk->validation_on ? validation_check(vk) : UNCLIP_OK;
    }
    st = staged_copy(vk, buf, offset, dst, bytes, false);
    if (st == UNCLIP_OK && vk->validation_on)
        st = validation_check(vk);
    return st;
}

/* ---- pipelines and dispatch ----------------------------------------------------------------- */

/* The pipeline of shader `id` with specialization constants spec[0..n_spec) (constant_id
 * 0..n_spec-1, 32 bits each), created on first use and kept for the context's life. */
static unclip_status
get_pipeline(struct unclip_vk *vk, int id, const uint32_t *spec, uint32_t n_spec,
             VkPipeline *out)
{
    if (id < 0 || id >= UNCLIP_SHADER_COUNT)
        return unclip__fail(&vk->err, UNCLIP_E_INTERNAL, "shader id %d out of range", id);
    if (n_spec > UNCLIP_VK_MAX_SPEC)
        return unclip__fail(&vk->err, UNCLIP_E_INTERNAL, "shader %s: %u specialization constants",
                            unclip__shaders[id].name, n_spec);
    if (n_spec == 0 && vk->pipelines[id]) {
        *out = vk->pipelines[id];
        return UNCLIP_OK;
    }
    if (n_spec > 0) {
        for (struct spec_pipe *sp = vk->spec_pipes; sp; sp = sp->next)
            if (sp->id == id && sp->n == n_spec && !memcmp(sp->v, spec, n_spec * sizeof *spec)) {
                *out = sp->pipe;
                return UNCLIP_OK;
            }
    }
    struct spec_pipe *sp = NULL;
    if (n_spec > 0) {
        sp = unclip__calloc(1, sizeof *sp);
        if (!sp)
            return unclip__fail(&vk->err, UNCLIP_E_NOMEM, "out of memory for a pipeline of %s",
                                unclip__shaders[id].name);
        sp->id = id;
        sp->n = n_spec;
        memcpy(sp->v, spec, n_spec * sizeof *spec);
    }
    const struct unclip_shader_blob *blob = &unclip__shaders[id];
    VkShaderModuleCreateInfo smci = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = blob->size,
        .pCode = blob->code,
    };
    VkShaderModule mod;
    VkResult r = vkCreateShaderModule(vk->device, &smci, NULL, &mod);
    if (r != VK_SUCCESS) {
        unclip__free(sp);
        return vk_fail(vk, r, "vkCreateShaderModule");
    }
    VkSpecializationMapEntry map[UNCLIP_VK_MAX_SPEC];
    for (uint32_t i = 0; i < n_spec; i++)
        map[i] = (VkSpecializationMapEntry){
            .constantID = i, .offset = i * (uint32_t)sizeof(uint32_t), .size = sizeof(uint32_t)};
    VkSpecializationInfo si = {
        .mapEntryCount = n_spec,
        .pMapEntries = map,
        .dataSize = n_spec * sizeof(uint32_t),
        .pData = spec,
    };
    VkComputePipelineCreateInfo cpci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = mod,
            .pName = "main",
            .pSpecializationInfo = n_spec ? &si : NULL,
        },
        .layout = vk->layout,
    };
    VkPipeline pipe = VK_NULL_HANDLE;
    r = vkCreateComputePipelines(vk->device, VK_NULL_HANDLE, 1, &cpci, NULL, &pipe);
    vkDestroyShaderModule(vk->device, mod, NULL);
    if (r != VK_SUCCESS) {
        unclip__free(sp);
        vk_fail(vk, r, "vkCreateComputePipelines");
        unclip__err_prefix(&vk->err, "shader %s", blob->name);
        return vk->err.code;
    }
    if (sp) {
        sp->pipe = pipe;
        sp->next = vk->spec_pipes;
        vk->spec_pipes = sp;
    } else {
        vk->pipelines[id] = pipe;
    }
    *out = pipe;
    return UNCLIP_OK;
}

static unclip_status record(struct unclip_vk *vk, VkCommandBuffer cmd, VkDescriptorPool pool,
                            VkPipeline pipe, const struct unclip_vk_bind *binds,
                            uint32_t n_binds, const void *push, uint32_t push_bytes,
                            uint32_t gx, uint32_t gy, uint32_t gz);
static unclip_status capture_dispatch(struct unclip_vk *vk, VkPipeline pipe,
                                      const struct unclip_vk_bind *binds, uint32_t n_binds,
                                      const void *push, uint32_t push_bytes, uint32_t gx,
                                      uint32_t gy, uint32_t gz, uint64_t work);

static unclip_status
begin_batch(struct unclip_vk *vk)
{
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VkResult r = vkBeginCommandBuffer(vk->cmd, &bi);
    if (r != VK_SUCCESS)
        return vk_fail(vk, r, "vkBeginCommandBuffer");
    vk->recording = true;
    vk->batch_dispatches = 0;
    vk->batch_work = 0;
    return UNCLIP_OK;
}

unclip_status
unclip__vk_dispatch(struct unclip_vk *vk, int shader_id, const struct unclip_vk_bind *binds,
                    uint32_t n_binds, const void *push, uint32_t push_bytes, uint32_t gx,
                    uint32_t gy, uint32_t gz, uint64_t work)
{
    return unclip__vk_dispatch_spec(vk, shader_id, NULL, 0, binds, n_binds, push, push_bytes, gx,
                                    gy, gz, work);
}

unclip_status
unclip__vk_dispatch_spec(struct unclip_vk *vk, int shader_id, const uint32_t *spec,
                         uint32_t n_spec, const struct unclip_vk_bind *binds, uint32_t n_binds,
                         const void *push, uint32_t push_bytes, uint32_t gx, uint32_t gy,
                         uint32_t gz, uint64_t work)
{
    if (vk->lost)
        return unclip__fail(&vk->err, UNCLIP_E_DEVICE_LOST,
                            "the Vulkan device was lost; recreate the context");
    if (n_binds > UNCLIP_VK_MAX_BINDS || push_bytes > UNCLIP_VK_MAX_PUSH || push_bytes % 4)
        return unclip__fail(&vk->err, UNCLIP_E_INTERNAL, "dispatch: %u bindings, %u push bytes",
                            n_binds, push_bytes);
    unclip_status dst = take_deferred(vk);
    if (dst != UNCLIP_OK)
        return dst;
    if (gx == 0 || gy == 0 || gz == 0)
        return UNCLIP_OK; /* empty grid: nothing to do */
    if (gx > vk->max_groups[0] || gy > vk->max_groups[1] || gz > vk->max_groups[2])
        return unclip__fail(&vk->err, UNCLIP_E_INTERNAL,
                            "dispatch of %s: grid %ux%ux%u exceeds the device limit %ux%ux%u",
                            unclip__shaders[shader_id].name, gx, gy, gz, vk->max_groups[0],
                            vk->max_groups[1], vk->max_groups[2]);
    for (uint32_t i = 0; i < n_binds; i++) {
        const struct unclip_vk_bind *b = &binds[i];
        if (!b->buf || b->offset > b->buf->size || b->bytes > b->buf->size - b->offset ||
            b->bytes == 0 || b->bytes > vk->info.max_storage_buffer_range ||
            (b->offset % BUF_ALIGN) != 0)
            return unclip__fail(&vk->err, UNCLIP_E_INTERNAL,
                                "dispatch of %s: binding %u [%llu, +%llu) is invalid (buffer %llu "
                                "bytes, range limit %llu)",
                                unclip__shaders[shader_id].name, i,
                                (unsigned long long)b->offset, (unsigned long long)b->bytes,
                                (unsigned long long)(b->buf ? b->buf->size : 0),
                                (unsigned long long)vk->info.max_storage_buffer_range);
    }
    VkPipeline pipe = VK_NULL_HANDLE;
    unclip_status st = get_pipeline(vk, shader_id, spec, n_spec, &pipe);
    if (st != UNCLIP_OK)
        return st;
    if (work > vk->stats.max_work_per_dispatch) {
        vk->stats.max_work_per_dispatch = work;
        vk->stats.max_dispatch_shader = unclip__shaders[shader_id].name;
    }
    if (vk->capture)
        return capture_dispatch(vk, pipe, binds, n_binds, push, push_bytes, gx, gy, gz, work);
    if (vk->recording && (vk->batch_dispatches >= BATCH_DISPATCHES ||
                          (vk->batch_work > 0 && vk->batch_work + work > vk->params.work_bound))) {
        if ((st = unclip__vk_finish(vk)) != UNCLIP_OK)
            return st;
    }
    if (!vk->recording && (st = begin_batch(vk)) != UNCLIP_OK)
        return st;
    if ((st = record(vk, vk->cmd, vk->desc_pool, pipe, binds, n_binds, push, push_bytes, gx, gy,
                     gz)) != UNCLIP_OK)
        return st;
    vk->batch_dispatches++;
    vk->batch_work += work ? work : 1;
    vk->stats.dispatches++;
    return UNCLIP_OK;
}

/* Records one dispatch (descriptor set from `pool`) and the barrier after it into cmd. */
static unclip_status
record(struct unclip_vk *vk, VkCommandBuffer cmd, VkDescriptorPool pool, VkPipeline pipe,
       const struct unclip_vk_bind *binds, uint32_t n_binds, const void *push,
       uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz)
{
    VkDescriptorSetAllocateInfo dai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = pool,
        .descriptorSetCount = 1,
        .pSetLayouts = &vk->dsl,
    };
    VkDescriptorSet set;
    VkResult r = vkAllocateDescriptorSets(vk->device, &dai, &set);
    if (r != VK_SUCCESS)
        return vk_fail(vk, r, "vkAllocateDescriptorSets");
    VkDescriptorBufferInfo bi[UNCLIP_VK_MAX_BINDS];
    VkWriteDescriptorSet w[UNCLIP_VK_MAX_BINDS];
    for (uint32_t i = 0; i < UNCLIP_VK_MAX_BINDS; i++) {
        const struct unclip_vk_buf *buf = i < n_binds ? binds[i].buf : vk->dummy;
        bi[i] = (VkDescriptorBufferInfo){
            .buffer = buf->block->buffer,
            .offset = buf->offset + (i < n_binds ? binds[i].offset : 0),
            .range = i < n_binds ? binds[i].bytes : buf->size,
        };
        w[i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = i,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = &bi[i],
        };
    }
    vkUpdateDescriptorSets(vk->device, UNCLIP_VK_MAX_BINDS, w, 0, NULL);

    vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vk->layout, 0, 1, &set, 0,
                            NULL);
    if (push_bytes)
        vkCmdPushConstants(cmd, vk->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
    vkCmdDispatch(cmd, gx, gy, gz);
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT,
    };
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    return UNCLIP_OK;
}

/* Turns validation messages not reported yet into a failure: tests and CI run with the layer
 * on and expect none, so a message is as much a bug as a wrong result. */
static unclip_status
validation_check(struct unclip_vk *vk)
{
    uint64_t n = atomic_load(&vk->val_messages);
    if (n == vk->val_reported)
        return UNCLIP_OK;
    uint64_t fresh = n - vk->val_reported;
    vk->val_reported = n;
    return unclip__fail(&vk->err, UNCLIP_E_VULKAN,
                        "Vulkan validation reported %llu message%s; the first: %s",
                        (unsigned long long)fresh, fresh == 1 ? "" : "s", vk->val_first);
}

bool
unclip__vk_validation_on(const struct unclip_vk *vk)
{
    return vk->validation_on;
}

uint64_t
unclip__vk_validation_messages(const struct unclip_vk *vk)
{
    return atomic_load(&((struct unclip_vk *)vk)->val_messages);
}

bool
unclip__vk_validation_inject(struct unclip_vk *vk, const char *text)
{
    if (!vk->validation_on)
        return false;
    PFN_vkSubmitDebugUtilsMessageEXT submit = (PFN_vkSubmitDebugUtilsMessageEXT)
        vkGetInstanceProcAddr(vk->instance, "vkSubmitDebugUtilsMessageEXT");
    if (!submit)
        return false;
    VkDebugUtilsMessengerCallbackDataEXT cd = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CALLBACK_DATA_EXT,
        .pMessageIdName = "unclip-test",
        .pMessage = text,
    };
    submit(vk->instance, VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
           VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT, &cd);
    return true;
}

static unclip_status submit_wait(struct unclip_vk *vk, VkCommandBuffer cmd, uint64_t work);

/* A host-side operation while capturing: the graph would miss it, so the capture is spoiled
 * (unclip__vk_capture_end fails and the caller records the work normally instead). */
static unclip_status
capture_spoil(struct unclip_vk *vk, const char *what)
{
    if (!vk->capture_spoiled)
        snprintf(vk->capture_msg, sizeof vk->capture_msg,
                 "%s while capturing a graph (only dispatches can be captured)", what);
    vk->capture_spoiled = true;
    return unclip__fail(&vk->err, UNCLIP_E_INTERNAL, "%s", vk->capture_msg);
}

unclip_status
unclip__vk_finish(struct unclip_vk *vk)
{
    unclip_status st = UNCLIP_OK;
    if (vk->lost)
        return unclip__fail(&vk->err, UNCLIP_E_DEVICE_LOST,
                            "the Vulkan device was lost; recreate the context");
    if (vk->capture)
        return capture_spoil(vk, "finish");
    if ((st = take_deferred(vk)) != UNCLIP_OK)
        return st;
    if (vk->recording) {
        vk->recording = false;
        VkResult r = vkEndCommandBuffer(vk->cmd);
        if (r != VK_SUCCESS) {
            st = vk_fail(vk, r, "vkEndCommandBuffer");
        } else {
            st = submit_wait(vk, vk->cmd, vk->batch_work);
        }
        if (!vk->lost) {
            vkResetCommandBuffer(vk->cmd, 0);
            vkResetDescriptorPool(vk->device, vk->desc_pool, 0);
        }
        vk->batch_dispatches = 0;
        vk->batch_work = 0;
    }
    if (st == UNCLIP_OK && vk->validation_on)
        st = validation_check(vk);
    if (st == UNCLIP_OK && vk->params.cancel_cb && vk->params.cancel_cb(vk->params.user_data))
        st = unclip__fail(&vk->err, UNCLIP_E_CANCELLED, "cancelled");
    return st;
}

/* Submits one command buffer holding `work` units and waits for it (fence timeout = the
 * watchdog bound). Fault sites: submit, fence wait (timeout), device lost. */
static unclip_status
submit_wait(struct unclip_vk *vk, VkCommandBuffer cmd, uint64_t work)
{
    unclip_status st = UNCLIP_OK;
    VkResult r;
    {
        if (unclip__fault_hit(UNCLIP_FAULT_SUBMIT)) {
            st = unclip__fail(&vk->err, UNCLIP_E_VULKAN,
                              "vkQueueSubmit failed: injected fault");
        } else {
            VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                               .commandBufferCount = 1,
                               .pCommandBuffers = &cmd};
            r = vkQueueSubmit(vk->queue, 1, &si, vk->fence);
            if (r != VK_SUCCESS) {
                st = vk_fail(vk, r, "vkQueueSubmit");
            } else {
                vk->stats.submissions++;
                if (work > vk->stats.max_work_per_submission)
                    vk->stats.max_work_per_submission = work;
                struct timespec w0, w1;
                clock_gettime(CLOCK_MONOTONIC, &w0);
                r = vkWaitForFences(vk->device, 1, &vk->fence, VK_TRUE,
                                    (uint64_t)vk->params.fence_timeout_ms * 1000000ull);
                clock_gettime(CLOCK_MONOTONIC, &w1);
                double ms = (double)(w1.tv_sec - w0.tv_sec) * 1e3 +
                            (double)(w1.tv_nsec - w0.tv_nsec) / 1e6;
                if (ms > vk->stats.max_submission_ms)
                    vk->stats.max_submission_ms = ms;
                if (r == VK_SUCCESS && unclip__fault_hit(UNCLIP_FAULT_FENCE_WAIT))
                    r = VK_TIMEOUT;
                if (r == VK_SUCCESS && unclip__fault_hit(UNCLIP_FAULT_DEVICE_LOST))
                    r = VK_ERROR_DEVICE_LOST;
                if (r == VK_TIMEOUT) {
                    /* The work may still be running: wait for it before the command buffer
                     * and descriptors are reused, so a late finish cannot corrupt memory. */
                    VkResult r2 = vkWaitForFences(vk->device, 1, &vk->fence, VK_TRUE, UINT64_MAX);
                    st = r2 == VK_SUCCESS
                             ? unclip__fail(&vk->err, UNCLIP_E_TIMEOUT,
                                            "the GPU did not finish a submission within %u ms",
                                            vk->params.fence_timeout_ms)
                             : vk_fail(vk, r2, "vkWaitForFences");
                } else if (r != VK_SUCCESS) {
                    st = vk_fail(vk, r, "vkWaitForFences");
                }
                if (!vk->lost)
                    vkResetFences(vk->device, 1, &vk->fence);
            }
        }
    }
    return st;
}

/* ---- recorded graphs ---------------------------------------------------------------------- */

uint64_t
unclip__vk_buf_serial(const struct unclip_vk_buf *buf)
{
    return buf ? buf->serial : 0;
}

void
unclip__vk_graph_free(struct unclip_vk_graph *g)
{
    if (!g)
        return;
    struct unclip_vk *vk = g->vk;
    for (uint32_t i = 0; i < g->n; i++) {
        if (g->seg[i].cmd)
            vkFreeCommandBuffers(vk->device, vk->cmd_pool, 1, &g->seg[i].cmd);
        if (g->seg[i].pool)
            vkDestroyDescriptorPool(vk->device, g->seg[i].pool, NULL);
    }
    unclip__free(g->seg);
    unclip__free(g);
}

unclip_status
unclip__vk_capture_begin(struct unclip_vk *vk)
{
    if (vk->capture)
        return unclip__fail(&vk->err, UNCLIP_E_INTERNAL, "capture: already capturing");
    /* Work recorded before the capture runs first (the graph may read its results). */
    unclip_status st = vk->recording ? unclip__vk_finish(vk) : take_deferred(vk);
    if (st != UNCLIP_OK)
        return st;
    struct unclip_vk_graph *g = unclip__calloc(1, sizeof *g);
    if (!g)
        return unclip__fail(&vk->err, UNCLIP_E_NOMEM, "out of host memory for a graph");
    g->vk = vk;
    vk->capture = g;
    vk->capture_spoiled = false;
    vk->capture_msg[0] = 0;
    return UNCLIP_OK;
}

/* Starts a new segment: a command buffer and a descriptor pool for BATCH_DISPATCHES sets. */
static unclip_status
graph_new_seg(struct unclip_vk *vk, struct unclip_vk_graph *g)
{
    if (g->n > 0) {
        VkResult r = vkEndCommandBuffer(g->seg[g->n - 1].cmd);
        if (r != VK_SUCCESS)
            return vk_fail(vk, r, "vkEndCommandBuffer");
    }
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? 2 * g->cap : 8;
        struct graph_seg *ns = unclip__realloc(g->seg, cap * sizeof *ns);
        if (!ns)
            return unclip__fail(&vk->err, UNCLIP_E_NOMEM, "out of host memory for a graph");
        g->seg = ns;
        g->cap = cap;
    }
    struct graph_seg *sg = &g->seg[g->n];
    memset(sg, 0, sizeof *sg);
    g->n++; /* counted now, so graph_free releases what is made below */
    unclip_status st = cmd_batch_new(vk, &sg->cmd, &sg->pool);
    if (st != UNCLIP_OK)
        return st;
    /* Not one-time: the segment is submitted once per replay. */
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VkResult r = vkBeginCommandBuffer(sg->cmd, &bi);
    if (r != VK_SUCCESS)
        return vk_fail(vk, r, "vkBeginCommandBuffer");
    return UNCLIP_OK;
}

static unclip_status
capture_dispatch(struct unclip_vk *vk, VkPipeline pipe, const struct unclip_vk_bind *binds,
                 uint32_t n_binds, const void *push, uint32_t push_bytes, uint32_t gx,
                 uint32_t gy, uint32_t gz, uint64_t work)
{
    struct unclip_vk_graph *g = vk->capture;
    if (vk->capture_spoiled)
        return unclip__fail(&vk->err, UNCLIP_E_INTERNAL, "%s", vk->capture_msg);
    struct graph_seg *sg = g->n ? &g->seg[g->n - 1] : NULL;
    unclip_status st;
    /* The same bounds as live batches: a segment is one submission when replayed. */
    if (!sg || sg->dispatches >= BATCH_DISPATCHES ||
        (sg->work > 0 && sg->work + work > vk->params.work_bound)) {
        if ((st = graph_new_seg(vk, g)) != UNCLIP_OK) {
            capture_spoil(vk, "a failed segment allocation");
            return st;
        }
        sg = &g->seg[g->n - 1];
    }
    if ((st = record(vk, sg->cmd, sg->pool, pipe, binds, n_binds, push, push_bytes, gx, gy,
                     gz)) != UNCLIP_OK) {
        capture_spoil(vk, "a failed recording");
        return st;
    }
    sg->dispatches++;
    sg->work += work ? work : 1;
    return UNCLIP_OK;
}

unclip_status
unclip__vk_capture_end(struct unclip_vk *vk, struct unclip_vk_graph **out)
{
    struct unclip_vk_graph *g = vk->capture;
    if (!g)
        return unclip__fail(&vk->err, UNCLIP_E_INTERNAL, "capture: not capturing");
    vk->capture = NULL;
    unclip_status st = UNCLIP_OK;
    if (vk->capture_spoiled) {
        st = unclip__fail(&vk->err, UNCLIP_E_INTERNAL, "%s", vk->capture_msg);
    } else if (g->n > 0) {
        VkResult r = vkEndCommandBuffer(g->seg[g->n - 1].cmd);
        if (r != VK_SUCCESS)
            st = vk_fail(vk, r, "vkEndCommandBuffer");
    }
    vk->capture_spoiled = false;
    if (st != UNCLIP_OK) {
        unclip__vk_graph_free(g);
        return st;
    }
    *out = g;
    return UNCLIP_OK;
}

unclip_status
unclip__vk_replay(struct unclip_vk *vk, const struct unclip_vk_graph *g)
{
    if (vk->lost)
        return unclip__fail(&vk->err, UNCLIP_E_DEVICE_LOST,
                            "the Vulkan device was lost; recreate the context");
    if (vk->capture)
        return capture_spoil(vk, "replay");
    /* Work recorded before runs first: the graph reads its results. */
    unclip_status st = vk->recording ? unclip__vk_finish(vk) : take_deferred(vk);
    for (uint32_t i = 0; st == UNCLIP_OK && i < g->n; i++) {
        st = submit_wait(vk, g->seg[i].cmd, g->seg[i].work);
        if (st == UNCLIP_OK) {
            vk->stats.dispatches += g->seg[i].dispatches;
            if (vk->validation_on)
                st = validation_check(vk);
        }
        if (st == UNCLIP_OK && vk->params.cancel_cb &&
            vk->params.cancel_cb(vk->params.user_data))
            st = unclip__fail(&vk->err, UNCLIP_E_CANCELLED, "cancelled");
    }
    return st;
}
