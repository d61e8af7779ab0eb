/* Op cases: resample. */
#include "ophelp.h"

const struct op_case ot_cases_resample[] = {
    {NULL, NULL, {0}},
};
