/*
 * test_report_data.c - gdml-report's reading of a run (report_data.c):
 * rounds.csv rows (a resumed run's repeated header included, a malformed
 * row refused with its line), and the byte logs summed per second and link,
 * each uplink from its region's log with its budget, each downlink from the
 * coordinator's, and a region without a log of its own falling back to the
 * coordinator's count.
 */
#include "../support.h"

#include "report_data.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *write_in(const char *dir, const char *name, const char *text)
{
    static char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gdml_test_write_file(path, text);
    return path;
}

Test(report_data, rounds_rows)
{
    char *dir = gdml_test_tmpdir();
    char *path = write_in(dir, "rounds.csv",
                          "version,elapsed_ms,accuracy,loss,wan_up,wan_down\n"
                          "1,1500,0.700000,0.900000,1000,2000\n"
                          "2,2500,nan,nan,3000,4000\n"
                          "version,elapsed_ms,accuracy,loss,wan_up,wan_down\n"
                          "3,9000,0.810000,0.500000,5000,6000\n");
    gdml_report_round *rows;
    size_t n;
    cr_assert_eq(gdml_report_read_rounds(path, &rows, &n, NULL), GDML_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(rows[0].version, 1);
    cr_assert_float_eq(rows[0].elapsed_s, 1.5, 1e-9);
    cr_assert_float_eq(rows[0].accuracy, 0.7, 1e-9);
    cr_assert(isnan(rows[1].accuracy));
    cr_assert_eq(rows[2].version, 3);
    cr_assert_eq(rows[2].wan_up + rows[2].wan_down, 11000);
    free(rows);
    gdml_test_rmtree(dir);
}

Test(report_data, bad_rounds_are_refused_with_their_line)
{
    char *dir = gdml_test_tmpdir();
    gdml_report_round *rows;
    size_t n;
    gdml_errmsg e;
    char *path = write_in(dir, "rounds.csv",
                          "version,elapsed_ms,accuracy,loss,wan_up,wan_down\n"
                          "1,1500,0.7,0.9,1000,2000\n"
                          "2,2500,0.7\n");
    cr_assert_eq(gdml_report_read_rounds(path, &rows, &n, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "rounds.csv:3:"), "%s", e.text);
    path = write_in(dir, "rounds.csv", "mono_ms,peer\n1,2\n");
    cr_assert_eq(gdml_report_read_rounds(path, &rows, &n, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, ":1: not a rounds.csv header"), "%s", e.text);
    path = write_in(dir, "rounds.csv",
                    "version,elapsed_ms,accuracy,loss,wan_up,wan_down\n"
                    "1,1500,0.7,0.9,1000,2000 trailing\n");
    cr_assert_eq(gdml_report_read_rounds(path, &rows, &n, &e), GDML_ERR_FORMAT);
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/none.csv", dir);
    cr_assert_eq(gdml_report_read_rounds(missing, &rows, &n, &e), GDML_ERR_NOTFOUND);
    gdml_test_rmtree(dir);
}

#define HEADER "mono_ms,peer,direction,type,bytes,rate\n"

Test(report_data, bytes_per_second_per_link_with_budgets)
{
    char *dir = gdml_test_tmpdir();
    /* The coordinator's view: r1's and r2's uplink and downlink. */
    write_in(dir, "bytes-coordinator.csv",
             HEADER "10000,r1,up,HELLO,100,0\n"
                    "10000,r1,down,WELCOME,500,8000\n"
                    "10100,r2,up,HELLO,100,0\n"
                    "10900,r2,down,WELCOME,500,0\n"
                    "12500,r1,down,UPDATE,700,8000\n"
                    "12600,r2,up,DELTA,900,0\n");
    /* r1's own log: its uplink with its budget (a SIGHUP raised it), and its downlink
     * (counted at the coordinator instead). r2 has none. */
    write_in(dir, "bytes-r1.csv",
             HEADER "10001,coordinator,up,HELLO,100,5000\n"
                    "10002,coordinator,down,WELCOME,500,5000\n"
                    "11500,coordinator,up,DELTA,3000,5000\n"
                    "12400,coordinator,up,DELTA,2000,6000\n");
    gdml_report_bytes b;
    cr_assert_eq(gdml_report_read_bytes(dir, &b, NULL), GDML_OK);
    cr_assert_eq(b.n_links, 2);
    cr_assert_eq(b.t0_ms, 10000);
    const gdml_report_link *r1 = &b.links[0], *r2 = &b.links[1];
    cr_assert_str_eq(r1->region, "r1");
    cr_assert_str_eq(r2->region, "r2");
    cr_assert_eq(r1->seconds, 3);
    cr_assert_eq(r1->up[0], 100);
    cr_assert_eq(r1->up[1], 3000);
    cr_assert_eq(r1->up[2], 2000);
    cr_assert_eq(r1->up_total, 5100);
    cr_assert_float_eq(r1->up_rate[1], 5000, 1e-9);
    cr_assert_float_eq(r1->up_rate[2], 6000, 1e-9);
    cr_assert_float_eq(r1->up_budget, 6000, 1e-9);
    cr_assert_eq(r1->down[0], 500);
    cr_assert_eq(r1->down[1], 0);
    cr_assert_float_eq(r1->down_rate[1], 8000, 1e-9, "a quiet second keeps the budget");
    cr_assert_eq(r1->down_total, 1200);
    /* r2: uplink from the coordinator's log, its budget unknown. */
    cr_assert_eq(r2->up_total, 1000);
    cr_assert_eq(r2->up[2], 900);
    cr_assert_float_eq(r2->up_budget, 0, 1e-9);
    cr_assert_eq(r2->down_total, 500);
    gdml_report_bytes_fini(&b);
    gdml_test_rmtree(dir);
}

Test(report_data, byte_logs_missing_or_malformed)
{
    char *dir = gdml_test_tmpdir();
    gdml_report_bytes b;
    gdml_errmsg e;
    cr_assert_eq(gdml_report_read_bytes(dir, &b, &e), GDML_ERR_NOTFOUND);
    cr_assert(strstr(e.text, "bytes-coordinator.csv"), "%s", e.text);
    write_in(dir, "bytes-coordinator.csv", HEADER "10000,r1,sideways,HELLO,100,0\n");
    cr_assert_eq(gdml_report_read_bytes(dir, &b, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "bytes-coordinator.csv:2:"), "%s", e.text);
    write_in(dir, "bytes-coordinator.csv", HEADER "10000,r1,up,HELLO,100,0\n");
    write_in(dir, "bytes-r1.csv", HEADER "garbage\n");
    cr_assert_eq(gdml_report_read_bytes(dir, &b, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "bytes-r1.csv:2:"), "%s", e.text);
    /* An empty log (no message yet) is no link and no seconds. */
    write_in(dir, "bytes-coordinator.csv", HEADER);
    cr_assert_eq(gdml_report_read_bytes(dir, &b, &e), GDML_OK);
    cr_assert_eq(b.n_links, 0);
    gdml_report_bytes_fini(&b);
    gdml_test_rmtree(dir);
}
