/* Every GPU op against its C reference on random, odd-sized inputs: one table of cases per
 * op family (tests/ops/cases-*.c), run in order.
 * Usage: test-ops [substring]  runs the cases whose name contains the substring. */
#include "ophelp.h"

#include <stdlib.h>
#include <string.h>

static const struct op_case *families[] = {
    ot_cases_elementwise, ot_cases_linear, ot_cases_conv, ot_cases_norm,
    ot_cases_attention,   ot_cases_resample, ot_cases_embed,
};

int
main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    struct unclip_err err = {0};
    struct unclip_vk *vk;
    struct unclip_vk_params p = unclip__vk_params_default();
    if (getenv("UNCLIP_VALIDATION"))
        p.validation = true;
    unclip_status st = unclip__vk_new(&p, &vk, &err);
    if (st != UNCLIP_OK) {
        printf("FAIL: no Vulkan context: %s\n", err.msg);
        return 1;
    }
    printf("device: %s\n", unclip__vk_info(vk)->name);
    int ran = 0;
    int index = 0;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
    for (const struct op_case *oc = families[f]; oc->name; oc++, index++) {
        if (filter && !strstr(oc->name, filter))
            continue;
        struct ot_ctx c = {.vk = vk, .case_name = oc->name};
        tu_rng_seed(&c.rng, 1000 + (uint64_t)index);
        oc->run(&c, oc->d);
        for (int k = 0; k < c.n; k++) {
            unclip__tensor_free(&c.t[k]);
            free(c.host[k]);
        }
        ran++;
    }
    TU_CHECK(ran > 0, "no case matched '%s'", filter ? filter : "");
    struct unclip_vk_stats stats;
    unclip__vk_stats(vk, &stats);
    printf("%d cases, %llu dispatches, %llu submissions\n", ran,
           (unsigned long long)stats.dispatches, (unsigned long long)stats.submissions);
    unclip__vk_free(vk);
    return tu_summary("test-ops");
}
