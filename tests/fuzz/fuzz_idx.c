/* fuzz_idx.c - the IDX reader on any file content (gzip or plain). */
#include "fuzz.h"

#include "log.h"

#include "idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gdml_log_init("fuzz", NULL, GDML_LOG_ERROR, GDML_LOG_TEXT); /* what the input provokes is not news */
    gdml_idx idx = {0};
    gdml_errmsg e;
    if (gdml_idx_read(fuzz_temp_file(data, size), &idx, &e) == GDML_OK)
        gdml_idx_fini(&idx);
    return 0;
}
