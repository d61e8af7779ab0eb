/* Op cases: linear. */
#include "ophelp.h"

const struct op_case ot_cases_linear[] = {
    {NULL, NULL, {0}},
};
