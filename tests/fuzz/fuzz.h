/*
 * fuzz.h - what every fuzz target shares. A target defines
 * LLVMFuzzerTestOneInput; under clang's libFuzzer (meson -Dfuzz=true) it is
 * fuzzed, and in the normal build replay.c runs it over the seed corpus and
 * every input that once crashed it (tests/fuzz/regress), so a fixed crash
 * stays fixed.
 */
#ifndef GDML_FUZZ_H
#define GDML_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to a fresh temporary file and returns its path (static storage). */
const char *fuzz_temp_file(const uint8_t *data, size_t size);

#endif
