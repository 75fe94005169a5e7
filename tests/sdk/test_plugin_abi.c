/* te_plugin.h's own copies of the shared types (what an installed plugin
 * compiles against) have the values and layout of the tree's te_error.h and
 * te_model.h, the ones the host is built with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "te_error.h"
#include "te_model.h"
#include "te_plugin.h"
#include "plugin_abi_layout.h"

size_t te_abi_in_tree(long long *out, size_t cap)
{
    size_t n = 0;
#define TE_ABI_PUT(v) if (n < cap) out[n++] = (long long)(v);
    TE_ABI_FIELDS(TE_ABI_PUT)
    return n;
}

static void test_same_abi(void **state)
{
    (void)state;
    long long a[64], b[64];
    size_t na = te_abi_standalone(a, 64), nb = te_abi_in_tree(b, 64);
    assert_int_equal(na, nb);
    assert_true(na > 30);
    for (size_t i = 0; i < na; i++)
        if (a[i] != b[i])
            fail_msg("item %zu of TE_ABI_FIELDS differs: te_plugin.h %lld, tree %lld", i, a[i], b[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_same_abi)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
