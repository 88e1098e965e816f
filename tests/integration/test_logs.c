/*
 * test_logs.c - a real short job with log.format = json: every line of every
 * process's log (the coordinator, each regional server and each worker,
 * stderr as gdml-launch keeps it) is one JSON object with ts, level, role and
 * event, no key twice, a name on servers' and workers' lines, and the
 * commit events carry their figures as numbers. Python's json module reads
 * the lines, so that the check is not the formatter's own idea of JSON.
 */
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exits 1 with the first bad line; else prints "ok LINES FILES COMMITS". */
static const char checker[] =
    "import glob, json, os, sys\n"
    "def pairs(kv):\n"
    "    keys = [k for k, _ in kv]\n"
    "    if len(keys) != len(set(keys)): raise ValueError('a key twice: %s' % keys)\n"
    "    return dict(kv)\n"
    "lines = files = commits = 0\n"
    "for path in sorted(glob.glob(os.path.join(sys.argv[1], '*.log'))):\n"
    "    files += 1\n"
    "    role = os.path.basename(path).split('-')[0].split('.')[0]\n"
    "    for n, line in enumerate(open(path, encoding='utf-8'), 1):\n"
    "        if line.startswith(('round=', 'done versions=')): continue  # stdout progress\n"
    "        try:\n"
    "            o = json.loads(line, object_pairs_hook=pairs)\n"
    "            assert isinstance(o, dict), 'not an object'\n"
    "            for k in ('ts', 'level', 'role', 'event'): assert k in o, 'no ' + k\n"
    "            assert o['level'] in ('error', 'warn', 'info', 'debug'), o['level']\n"
    "            assert o['ts'].endswith('Z') and len(o['ts']) == 24, o['ts']\n"
    "            assert o['role'] == role, 'role %s in %s' % (o['role'], path)\n"
    "            if role in ('server', 'worker'): assert o.get('name'), 'no name'\n"
    "            if o['event'] == 'commit':\n"
    "                assert type(o['version']) is int and type(o['accuracy']) is float\n"
    "                commits += 1\n"
    "        except Exception as e:\n"
    "            sys.exit('%s:%d: %s: %r' % (path, n, e, line))\n"
    "        lines += 1\n"
    "print('ok', lines, files, commits)\n";

Test(logs, every_line_of_a_json_job_is_a_json_object_with_the_required_keys, .timeout = 300)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    char run[4200], logs[4300];
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(logs, sizeof logs, "%s/logs", run);
    char *launch = gdml_test_program("gdml-launch");
    char *ini = gdml_test_source_path("config/local-job.ini");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){launch, "--config", ini, "--run-dir", run, "--set",
                                      "coordinator.rounds=3", "--log-format", "json", NULL},
                           240, &out);
    cr_assert_eq(rc, 0, "the job failed:\n%s", out);
    free(out);

    rc = gdml_test_run((char *[]){"/usr/bin/python3", "-c", (char *)checker, logs, NULL}, 60, &out);
    cr_assert_eq(rc, 0, "a log line is not what it should be:\n%s", out);
    unsigned lines = 0, files = 0, commits = 0;
    cr_assert_eq(sscanf(out, "ok %u %u %u", &lines, &files, &commits), 3, "%s", out);
    /* A coordinator, 3 servers, 6 workers (config/local-job.ini), each with a few events. */
    cr_assert_eq(files, 10, "%s", out);
    cr_assert_geq(lines, 5 * files, "%s", out);
    cr_assert_eq(commits, 3, "%s", out);
    free(out);
    free(launch);
    free(ini);
    gdml_test_rmtree(dir);
}
