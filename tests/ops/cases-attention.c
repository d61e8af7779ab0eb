/* Op cases: attention. */
#include "ophelp.h"

const struct op_case ot_cases_attention[] = {
    {NULL, NULL, {0}},
};
