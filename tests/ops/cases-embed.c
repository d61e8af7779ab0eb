/* Op cases: embed. */
#include "ophelp.h"

const struct op_case ot_cases_embed[] = {
    {NULL, NULL, {0}},
};
