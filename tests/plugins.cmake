# Linear-layer reference math, the plugin loader and the CPU plugin.

te_add_unit_test(test_linear SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_linear.c LIBS twinedge_core)
# The same tests against te_linear.c without the per-CPU clones of its
# element loops (the baseline x86-64 code, which AVX2 machines never run).
te_add_unit_test(test_linear_generic SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_linear.c
                 ${PROJECT_SOURCE_DIR}/core/te_linear.c LIBS twinedge_core)
target_include_directories(test_linear_generic PRIVATE ${PROJECT_SOURCE_DIR}/core)
target_compile_definitions(test_linear_generic PRIVATE TE_NO_CLONES)

# Test-only plugins: refused, one built against ABI version 0, one with a NULL
# function in its table, one with a too short struct_size; loaded, one from
# an older 3.x header (struct_size before create_host).
foreach(variant old_abi null_fn short growth)
  add_library(te_test_plugin_${variant} MODULE ${CMAKE_CURRENT_SOURCE_DIR}/unit/plugins/old_abi_plugin.c)
  target_include_directories(te_test_plugin_${variant} PRIVATE ${PROJECT_SOURCE_DIR}/plugins ${PROJECT_SOURCE_DIR}/core)
  string(TOUPPER ${variant} V)
  target_compile_definitions(te_test_plugin_${variant} PRIVATE TE_TEST_VARIANT_${V}=1)
endforeach()

te_add_unit_test(test_plugin_loader SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_plugin_loader.c
                 LIBS twinedge_plugin_loader twinedge_core)
target_compile_definitions(test_plugin_loader PRIVATE
  TE_TEST_OLD_ABI_PLUGIN="$<TARGET_FILE:te_test_plugin_old_abi>"
  TE_TEST_NULL_FN_PLUGIN="$<TARGET_FILE:te_test_plugin_null_fn>"
  TE_TEST_SHORT_PLUGIN="$<TARGET_FILE:te_test_plugin_short>"
  TE_TEST_GROWTH_PLUGIN="$<TARGET_FILE:te_test_plugin_growth>"
  TE_TEST_CPU_PLUGIN="$<TARGET_FILE:twinedge-plugin-cpu>"
  TE_TEST_PLUGIN_BUILD_DIR="${TE_PLUGIN_BUILD_DIR}")
add_dependencies(test_plugin_loader te_test_plugin_old_abi te_test_plugin_null_fn te_test_plugin_short
                 te_test_plugin_growth twinedge-plugin-cpu)

te_add_unit_test(test_cpu_plugin SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cpu_plugin.c
                 LIBS twinedge_plugin_loader twinedge_core TIMEOUT 120)
add_dependencies(test_cpu_plugin twinedge-plugin-cpu)
