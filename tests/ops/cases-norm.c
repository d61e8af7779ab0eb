/* Op cases: norm. */
#include "ophelp.h"

const struct op_case ot_cases_norm[] = {
    {NULL, NULL, {0}},
};
