/* fuzz_codec.c - the codec payload decoder: the first 4 bytes say n, the rest is a payload. */
#include "fuzz.h"

#include "codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t n = (uint32_t)data[0] | (uint32_t)data[1] << 8;
    n = n % 70000 + 1;
    float *out = malloc(n * sizeof *out);
    if (!out)
        return 0;
    gdml_errmsg e;
    if (gdml_codec_decode(data + 4, size - 4, out, n, &e) == GDML_OK)
        for (uint32_t i = 0; i < n; i++)
            if (!isfinite(out[i]))
                abort(); /* the decoder promises finite values */
    free(out);
    return 0;
}
