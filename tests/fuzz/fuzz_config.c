/* fuzz_config.c - the INI configuration parser on any file content. */
#include "fuzz.h"

#include "log.h"

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gdml_log_init("fuzz", NULL, GDML_LOG_ERROR, GDML_LOG_TEXT); /* what the input provokes is not news */
    gdml_config cfg;
    gdml_config_defaults(&cfg);
    gdml_errmsg e;
    gdml_config_load(&cfg, fuzz_temp_file(data, size), &e);
    return 0;
}
