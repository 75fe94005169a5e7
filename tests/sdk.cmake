# The SDKs (device-sdk/, plugins/te_plugin.h) as installed.
#   test_sdk_transport   an app's own transport (public callbacks), versions
#   test_plugin_abi      te_plugin.h's standalone types == the tree's
#   sdk_install          cmake --install into a temporary prefix; the
#                        examples and a third-party plugin built from it
#                        alone, run against real hosts (tests/attack/lib.sh)
te_add_unit_test(test_sdk_transport SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/sdk/test_sdk_transport.c LIBS te_harness
                 TIMEOUT 300)
add_dependencies(test_sdk_transport twinedge-plugin-cpu)
set_tests_properties(test_sdk_transport PROPERTIES FIXTURES_REQUIRED testdata)

te_add_unit_test(test_plugin_abi SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/sdk/test_plugin_abi.c
                 ${CMAKE_CURRENT_SOURCE_DIR}/sdk/plugin_abi_standalone.c LIBS twinedge_core)
target_include_directories(test_plugin_abi PRIVATE ${PROJECT_SOURCE_DIR}/plugins ${CMAKE_CURRENT_SOURCE_DIR}/sdk)
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/sdk/plugin_abi_standalone.c PROPERTIES
                            COMPILE_OPTIONS -UTE_IN_TREE)

add_test(NAME sdk_install COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sdk/sdk_install_test.sh ${CMAKE_BINARY_DIR}
         ${PROJECT_SOURCE_DIR} $<TARGET_FILE:twinedge-infer>)
set_tests_properties(sdk_install PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 600 LABELS sdk
                     ENVIRONMENT "${TE_ATTACK_ENV}")

# Inputs refused by name (shape, NaN/inf, inexact dtypes) and the one report
# schema of twinedge-run and twinedge-infer.
add_test(NAME input_report COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/input_report_test.sh
         $<TARGET_FILE:twinedge-run> $<TARGET_FILE:twinedge-infer>)
set_tests_properties(input_report PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 600 ENVIRONMENT "${TE_ATTACK_ENV}")
te_add_unit_test(test_input SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_input.c LIBS twinedge_core)
