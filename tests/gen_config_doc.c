/*
 * gen_config_doc.c - rewrites the generated part of docs/config.md (from the
 * line "## [log]" to the end) with gdml_config_print_markdown's tables, keeping
 * the hand-written introduction above it. Run: meson compile -C build config-doc
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_config_doc docs/config.md\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static char intro[1 << 16];
    size_t len = fread(intro, 1, sizeof intro - 1, f);
    fclose(f);
    intro[len] = '\0';
    char *generated = strstr(intro, "\n## [log]\n");
    if (!generated) {
        fprintf(stderr, "%s: no '## [log]' line marks where the generated tables start\n", argv[1]);
        return 1;
    }
    generated[1] = '\0';
    if (!(f = fopen(argv[1], "w"))) {
        perror(argv[1]);
        return 1;
    }
    fputs(intro, f);
    gdml_config_print_markdown(f);
    if (fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
