/*
 * replay.c - runs a fuzz target's LLVMFuzzerTestOneInput over files, for the
 * normal build: `fuzz_msg_replay DIR...` feeds every file under each DIR
 * (the seed corpus, and the inputs that once crashed it). Exit 0 if every
 * input returned; a crash or abort fails the test.
 */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 1;
}

int main(int argc, char **argv)
{
    int inputs = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            inputs += replay_file(argv[i]);
            continue;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            inputs += replay_file(path);
        }
        closedir(d);
    }
    printf("1..1\nok 1 - %d inputs replayed\n", inputs);
    return inputs > 0 ? 0 : 1;
}
