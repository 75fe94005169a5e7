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

# The whole suite, quick, on the reduced AlexNet: real hosts over mutual TLS,
# every mode, throughput with two devices, the emulated wireless link; checks
# the JSON contract, the report and the charts (no timing assertion).
if(TARGET twinedge-bench)
  add_test(NAME bench_suite_smoke
           COMMAND ${CMAKE_COMMAND} -DBENCH=$<TARGET_FILE:twinedge-bench> -DMODELS=${TE_TEST_DATA}
                   -DOUT=${CMAKE_CURRENT_BINARY_DIR}/bench_suite_smoke
                   -P ${PROJECT_SOURCE_DIR}/tools/bench/suite_smoke.cmake)
  set_tests_properties(bench_suite_smoke PROPERTIES
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}"
    FIXTURES_REQUIRED testdata TIMEOUT 600)
  te_add_unit_test(test_linkemu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_linkemu.c
                   LIBS twinedge_linkemu TIMEOUT 60)
endif()

# twinedge-bench headroom on the reduced AlexNet and one generated PNG: the
# JSON contract (the figures come from real photos, docs/benchmarks).
if(TARGET twinedge-bench)
  add_test(NAME bench_headroom_smoke
           COMMAND ${CMAKE_COMMAND} -DBENCH=$<TARGET_FILE:twinedge-bench> -DMODELS=${TE_TEST_DATA}
                   -DOUT=${CMAKE_CURRENT_BINARY_DIR}/bench_headroom_smoke -DPYTHON=${TE_PYTHON}
                   -DIMAGE_REF=${CMAKE_CURRENT_SOURCE_DIR}/unit/image_ref.py
                   -P ${PROJECT_SOURCE_DIR}/tools/bench/headroom_smoke.cmake)
  set_tests_properties(bench_headroom_smoke PROPERTIES
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA}" FIXTURES_REQUIRED testdata TIMEOUT 300)
endif()
