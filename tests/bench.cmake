# Smoke test of twinedge-bench: the kernel benchmark runs on a reduced model
# and writes its JSON (no timing assertion: timings depend on the machine).
if(TARGET twinedge-bench)
  add_test(NAME bench_kernels_smoke
           COMMAND ${CMAKE_COMMAND} -DBENCH=$<TARGET_FILE:twinedge-bench> -DMODELS=${TE_TEST_DATA}
                   -DOUT=${CMAKE_CURRENT_BINARY_DIR}/bench_kernels_smoke.json
                   -P ${PROJECT_SOURCE_DIR}/tools/bench/smoke.cmake)
  set_tests_properties(bench_kernels_smoke PROPERTIES
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}"
    FIXTURES_REQUIRED testdata TIMEOUT 300)
endif()
