/*
 * keys_tool.c - gdml-keys: CURVE key pairs for gdml's links.
 *
 *   gdml-keys new NAME [--dir DIR]   writes DIR/NAME.key (mode 0600) and DIR/NAME.pub
 *   gdml-keys show FILE              prints the name and public key of a .key or .pub file
 *
 * NAME is the peer's gdml name (a region's server.name, a worker's
 * worker.name, or "coordinator"). An allow-list is the .pub files of the
 * peers that may connect, put together: cat us-east.pub eu-west.pub > regions.allow.
 * docs/security.md says how to distribute and rotate keys.
 */
#include "keys.h"
#include "names.h"
#include "program.h"

#include <stdio.h>
#include <string.h>

static int usage(FILE *f, int status)
{
    fprintf(f, "usage: gdml-keys new NAME [--dir DIR]\n"
               "       gdml-keys show FILE\n"
               "Makes CURVE key pairs for gdml's links: NAME.key (secret, mode 0600) and "
               "NAME.pub.\n"
               "Put the .pub files of the peers that may connect into one allow-list file.\n");
    return status;
}

static int show(const char *path)
{
    gdml_errmsg e = {{0}};
    gdml_curve_key k;
    char name[GDML_NAME_MAX], z85[GDML_CURVE_Z85_LEN + 1];
    uint8_t pub[GDML_CURVE_KEY_BYTES];
    size_t len = strlen(path);
    bool secret = len > 4 && strcmp(path + len - 4, ".key") == 0;
    gdml_err err = secret ? gdml_keys_load_pair(path, &k, &e)
                          : gdml_keys_load_public(path, name, pub, &e);
    if (err) {
        fprintf(stderr, "gdml-keys: %s\n", e.text);
        return gdml_exit_status(err);
    }
    gdml_curve_z85_encode(secret ? k.public_key : pub, z85);
    printf("%s %s\n", secret ? k.name : name, z85);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return usage(stdout, 0);
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("gdml-keys %s\n", GDML_VERSION);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "show") == 0)
        return show(argv[2]);
    if (argc < 3 || strcmp(argv[1], "new") != 0)
        return usage(stderr, 2);
    const char *dir = ".";
    if (argc == 5 && strcmp(argv[3], "--dir") == 0)
        dir = argv[4];
    else if (argc != 3)
        return usage(stderr, 2);
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_keys_write_pair(dir, argv[2], &e);
    if (err) {
        fprintf(stderr, "gdml-keys: %s\n", e.text);
        return err == GDML_ERR_INVALID ? 2 : gdml_exit_status(err);
    }
    printf("%s/%s.key (secret: keep it on %s's host only) and %s/%s.pub (give it to its peers)\n",
           dir, argv[2], argv[2], dir, argv[2]);
    return 0;
}
