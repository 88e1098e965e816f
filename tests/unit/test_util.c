/*
 * test_util.c - the small shared modules: error messages (err), log levels
 * (log), and util's directories, atomic writes and number parsing.
 */
#include "../support.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

Test(err, set_returns_the_code_and_formats)
{
    gdml_errmsg e;
    cr_assert_eq(gdml_errmsg_set(&e, GDML_ERR_IO, "cannot open %s: %d", "x", 7), GDML_ERR_IO);
    cr_assert_str_eq(e.text, "cannot open x: 7");
    cr_assert_eq(gdml_errmsg_set(NULL, GDML_ERR_TIMEOUT, "ignored"), GDML_ERR_TIMEOUT);
}

Test(err, prefix_keeps_the_message_and_truncates_safely)
{
    gdml_errmsg e;
    gdml_errmsg_set(&e, GDML_ERR_IO, "disk full");
    gdml_errmsg_prefix(&e, "store '%s': ", "s");
    cr_assert_str_eq(e.text, "store 's': disk full");
    char big[GDML_ERRMSG_MAX * 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    gdml_errmsg_prefix(&e, "%s", big);
    cr_assert_eq(strlen(e.text), GDML_ERRMSG_MAX - 1);
    gdml_errmsg_prefix(NULL, "nothing");
}

Test(err, every_code_has_a_description)
{
    for (int c = GDML_OK; c <= GDML_ERR_EXISTS; c++)
        cr_assert_str_neq(gdml_strerror((gdml_err)c), "unknown error", "code %d", c);
    cr_assert_str_eq(gdml_strerror((gdml_err)999), "unknown error");
}

Test(log, levels_parse_and_gate)
{
    cr_assert_eq(gdml_log_level_parse("warn"), GDML_LOG_WARN);
    cr_assert_eq(gdml_log_level_parse("debug"), GDML_LOG_DEBUG);
    cr_assert_eq(gdml_log_level_parse("loud"), -1);
    gdml_log_init("test", NULL, GDML_LOG_WARN, GDML_LOG_TEXT);
    cr_assert_eq(gdml_log_threshold(), GDML_LOG_WARN);
    int formatted = 0;
    /* A line above the threshold is not even formatted. */
    gdml_debug("test", "n=%d", ++formatted);
    cr_assert_eq(formatted, 0);
    gdml_warn("test", "n=%d", ++formatted);
    cr_assert_eq(formatted, 1);
}

Test(util, mkdir_p_and_atomic_write)
{
    char *dir = gdml_test_tmpdir();
    char path[4200], file[4300];
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    gdml_errmsg e;
    cr_assert_eq(gdml_mkdir_p(path, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_mkdir_p(path, &e), GDML_OK, "an existing directory is fine");
    struct stat st;
    cr_assert(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    snprintf(file, sizeof file, "%s/f.txt", path);
    cr_assert_eq(gdml_write_file_atomic(file, "one\n", 4, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_write_file_atomic(file, "two\n", 4, &e), GDML_OK, "%s", e.text);
    char *text = gdml_test_read_file(file);
    cr_assert_str_eq(text, "two\n");
    free(text);
    /* A file where a directory should be is refused with its path. */
    char blocked[4400];
    snprintf(blocked, sizeof blocked, "%s/sub", file);
    cr_assert_eq(gdml_mkdir_p(blocked, &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, "f.txt"), "%s", e.text);
    cr_assert_eq(gdml_write_file_atomic(blocked, "x", 1, &e), GDML_ERR_IO);
    gdml_test_rmtree(dir);
}

Test(util, parse_u64)
{
    uint64_t v = 0;
    cr_assert(gdml_parse_u64("42", &v) && v == 42);
    cr_assert(gdml_parse_u64("18446744073709551615", &v) && v == UINT64_MAX);
    cr_assert_not(gdml_parse_u64("18446744073709551616", &v), "overflow");
    cr_assert_not(gdml_parse_u64("-1", &v));
    cr_assert_not(gdml_parse_u64("12x", &v));
    cr_assert_not(gdml_parse_u64("", &v));
    cr_assert_not(gdml_parse_u64(NULL, &v));
}

Test(util, clocks_move_forward)
{
    int64_t a = gdml_now_ms(), w = gdml_wall_ms();
    cr_assert(w > 1700000000000LL, "wall clock is epoch milliseconds");
    cr_assert(gdml_now_ms() >= a);
}

Test(util, sort_u32_orders_the_whole_range)
{
    /* Values on both sides of 2^31: a comparator that subtracts would misorder them. */
    uint32_t v[] = {7, UINT32_MAX, 0, 0x80000000u, 3, 7, 0x7fffffffu};
    const uint32_t want[] = {0, 3, 7, 7, 0x7fffffffu, 0x80000000u, UINT32_MAX};
    gdml_sort_u32(v, sizeof v / sizeof *v);
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        cr_assert_eq(v[i], want[i], "v[%zu] = %u, want %u", i, v[i], want[i]);
    gdml_sort_u32(v, 0); /* nothing to sort is fine */
}
