#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *
type_name(enum unclip_device_type t)
{
    switch (t) {
    case UNCLIP_DEVICE_DISCRETE_GPU: return "discrete GPU";
    case UNCLIP_DEVICE_INTEGRATED_GPU: return "integrated GPU";
    case UNCLIP_DEVICE_VIRTUAL_GPU: return "virtual GPU";
    case UNCLIP_DEVICE_CPU: return "CPU";
    default: return "other";
    }
}

int
cli_cmd_devices(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: unclip devices\n");
        return 2;
    }
    struct unclip_device_info *list = NULL;
    int32_t n = 0;
    char err[1024];
    unclip_status st = unclip_devices_list(&list, &n, err, sizeof err);
    if (st != UNCLIP_OK) {
        fprintf(stderr, "unclip: %s\n", err);
        return 1;
    }
    int32_t pick = unclip_device_pick(list, n);
    if (n == 0)
        printf("no Vulkan devices (install a driver, e.g. mesa-vulkan-drivers)\n");
    for (int32_t i = 0; i < n; i++) {
        const struct unclip_device_info *d = &list[i];
        printf("%s%d: %s (%s, Vulkan %u.%u)\n", i == pick ? "*" : " ", (int)d->index, d->name,
               type_name(d->type), (d->api_version >> 22) & 0x7f, (d->api_version >> 12) & 0x3ff);
        if (d->driver[0])
            printf("    driver:              %s\n", d->driver);
        printf("    device-local memory: %.0f MiB\n", (double)d->device_local_bytes / 1048576.0);
        printf("    host-visible heap:   %.0f MiB\n", (double)d->host_visible_bytes / 1048576.0);
        printf("    storage range:       %.0f MiB per binding\n",
               (double)d->max_storage_buffer_range / 1048576.0);
        printf("    shared memory:       %u KiB\n", d->max_shared_memory / 1024);
        printf("    subgroup size:       %u\n", d->subgroup_size);
        printf("    fp16 arithmetic:     %s\n", d->shader_float16 ? "yes" : "no");
        printf("    16-bit storage:      %s\n", d->storage_16bit ? "yes" : "no");
        if (!d->usable)
            printf("    unusable:            %s\n", d->why_unusable);
    }
    if (n > 0)
        printf("* = the device used by default\n");
    unclip_free(list);
    return 0;
}
