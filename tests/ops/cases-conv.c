/* Op cases: conv. */
#include "ophelp.h"

const struct op_case ot_cases_conv[] = {
    {NULL, NULL, {0}},
};
