/* The plugin loader: name resolution, ABI checks, error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "te_plugin.h"

static void test_cpu_by_name_and_path(void **state)
{
    (void)state;
    te_err err;
    te_err_clear(&err);
    te_plugin *p = NULL;
    assert_int_equal(te_plugin_open("cpu", NULL, &p, &err), TE_OK);
    assert_non_null(p);
    const te_plugin_ops *ops = te_plugin_get_ops(p);
    assert_non_null(ops);
    assert_int_equal(ops->abi_version, TE_PLUGIN_ABI_VERSION);
    assert_string_equal(ops->name, "cpu");
    assert_non_null(te_plugin_get_ctx(p));
    te_plugin_caps caps;
    assert_int_equal(ops->caps(te_plugin_get_ctx(p), &caps, &err), TE_OK);
    assert_non_null(strstr(caps.device_name, "CPU"));
    te_plugin_close(p);

    p = NULL;
    assert_int_equal(te_plugin_open(TE_TEST_CPU_PLUGIN, "threads=1", &p, &err), TE_OK);
    assert_string_equal(te_plugin_get_ops(p)->name, "cpu");
    te_plugin_close(p);
    te_plugin_close(NULL);
    assert_null(te_plugin_get_ops(NULL));
}

typedef struct sink_lines {
    int n, levels[16];
    char plugin[16][32], msg[16][256];
} sink_lines;

static void sink(void *ctx, int level, const char *plugin, const char *msg)
{
    sink_lines *s = ctx;
    if (s->n < 16) {
        s->levels[s->n] = level;
        snprintf(s->plugin[s->n], sizeof s->plugin[0], "%s", plugin);
        snprintf(s->msg[s->n], sizeof s->msg[0], "%s", msg);
        s->n++;
    }
}

/* A plugin's te_plugin_log lines reach the sink its host gave, named and
 * at their level (the cpu plugin says which kernels it runs, per layer at
 * debug). */
static void test_log_sink(void **state)
{
    (void)state;
    te_err err;
    te_plugin *p = NULL;
    sink_lines s;
    memset(&s, 0, sizeof s);
    assert_int_equal(te_plugin_open_logged("cpu", "threads=1", sink, &s, &p, &err), TE_OK);
    int ready = -1;
    for (int i = 0; i < s.n; i++)
        if (strncmp(s.msg[i], "ready: CPU (", 12) == 0)
            ready = i;
    assert_true(ready >= 0);
    assert_string_equal(s.plugin[ready], "cpu");
    assert_int_equal(s.levels[ready], TE_PLUGIN_LOG_INFO);
    const te_plugin_ops *ops = te_plugin_get_ops(p);
    te_linear_geom g = {.kind = TE_LIN_FC, .batch = 1, .in_c = 4, .in_h = 1, .in_w = 1, .out_c = 2, .out_h = 1,
                        .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1,
                        .group = 1};
    int32_t w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    te_plugin_layer *L = NULL;
    int before = s.n;
    assert_int_equal(ops->load_layer(te_plugin_get_ctx(p), &g, w, &L, &err), TE_OK);
    assert_int_equal(s.n, before + 1);
    assert_int_equal(s.levels[before], TE_PLUGIN_LOG_DEBUG);
    assert_non_null(strstr(s.msg[before], "kernels"));
    ops->release_layer(te_plugin_get_ctx(p), L);
    te_plugin_close(p);
}

static void test_old_abi_refused(void **state)
{
    (void)state;
    te_err err;
    te_err_clear(&err);
    te_plugin *p = (te_plugin *)&err; /* must be reset to NULL */
    assert_int_equal(te_plugin_open(TE_TEST_OLD_ABI_PLUGIN, NULL, &p, &err), TE_EPLUGIN);
    assert_null(p);
    /* names the file, its ABI version and ours */
    assert_non_null(strstr(err.msg, TE_TEST_OLD_ABI_PLUGIN));
    assert_non_null(strstr(err.msg, "ABI version 0"));
    char ours[64];
    snprintf(ours, sizeof ours, "version %u", (unsigned)TE_PLUGIN_ABI_VERSION);
    assert_non_null(strstr(err.msg, ours));
}

/* ABI growth by addition: a table shorter than any 3.x table is refused; one
 * from an older 3.x header (struct_size before create_host) loads, and the
 * host reads nothing past its end (its create_host would fail). */
static void test_table_size(void **state)
{
    (void)state;
    te_err err;
    te_err_clear(&err);
    te_plugin *p = NULL;
    assert_int_equal(te_plugin_open(TE_TEST_SHORT_PLUGIN, NULL, &p, &err), TE_EPLUGIN);
    assert_null(p);
    assert_non_null(strstr(err.msg, "shorter than any table"));
    te_err_clear(&err);
    assert_int_equal(te_plugin_open(TE_TEST_GROWTH_PLUGIN, NULL, &p, &err), TE_OK);
    const te_plugin_ops *ops = te_plugin_get_ops(p);
    assert_null(ops->create_host);
    assert_null(ops->run_f32);
    assert_int_equal(ops->struct_size, sizeof(te_plugin_ops));
    assert_string_equal(ops->name, "growth");
    te_plugin_close(p);
}

static void test_null_function_refused(void **state)
{
    (void)state;
    te_err err;
    te_plugin *p = NULL;
    assert_int_equal(te_plugin_open(TE_TEST_NULL_FN_PLUGIN, NULL, &p, &err), TE_EPLUGIN);
    assert_null(p);
    assert_non_null(strstr(err.msg, "destroy"));
}

static void test_missing_plugin_lists_paths(void **state)
{
    (void)state;
    te_err err;
    te_plugin *p = NULL;
    assert_int_equal(te_plugin_open("nosuch", NULL, &p, &err), TE_EPLUGIN);
    assert_null(p);
    assert_non_null(strstr(err.msg, "nosuch"));
    assert_non_null(strstr(err.msg, "libtwinedge-plugin-nosuch.so"));
    assert_non_null(strstr(err.msg, TE_TEST_PLUGIN_BUILD_DIR));

    /* $TWINEDGE_PLUGIN_DIR is searched first, and may list several dirs */
    const char *old = getenv("TWINEDGE_PLUGIN_DIR");
    char *saved = old ? strdup(old) : NULL;
    assert_int_equal(setenv("TWINEDGE_PLUGIN_DIR", "/nonexistent/a:/nonexistent/b", 1), 0);
    assert_int_equal(te_plugin_open("nosuch", NULL, &p, &err), TE_EPLUGIN);
    char *a = strstr(err.msg, "/nonexistent/a/libtwinedge-plugin-nosuch.so");
    char *b = strstr(err.msg, "/nonexistent/b/libtwinedge-plugin-nosuch.so");
    char *bd = strstr(err.msg, TE_TEST_PLUGIN_BUILD_DIR);
    assert_true(a && b && bd && a < b && b < bd);
    /* the build tree is still found after the env dirs */
    assert_int_equal(te_plugin_open("cpu", NULL, &p, &err), TE_OK);
    te_plugin_close(p);
    if (saved) {
        setenv("TWINEDGE_PLUGIN_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("TWINEDGE_PLUGIN_DIR");
    }

    assert_int_equal(te_plugin_open("/nonexistent/libx.so", NULL, &p, &err), TE_EPLUGIN);
    assert_non_null(strstr(err.msg, "/nonexistent/libx.so"));
    assert_int_equal(te_plugin_open("../evil name", NULL, &p, &err), TE_EPLUGIN);
    assert_int_equal(te_plugin_open("bad name", NULL, &p, &err), TE_EPLUGIN);
}

static void test_not_a_plugin(void **state)
{
    (void)state;
    te_err err;
    te_plugin *p = NULL;
    /* a file that is not a shared object: dlopen's error text is reported */
    char path[] = "/tmp/te_not_a_plugin_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    assert_non_null(fp);
    fputs("not an ELF file\n", fp);
    fclose(fp);
    assert_int_equal(te_plugin_open(path, NULL, &p, &err), TE_EPLUGIN);
    assert_non_null(strstr(err.msg, path));
    remove(path);
    assert_null(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_by_name_and_path),
        cmocka_unit_test(test_log_sink),
        cmocka_unit_test(test_old_abi_refused),
        cmocka_unit_test(test_table_size),
        cmocka_unit_test(test_null_function_refused),
        cmocka_unit_test(test_missing_plugin_lists_paths),
        cmocka_unit_test(test_not_a_plugin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
