# The host core (host/host.c): cross-device batching.
te_add_unit_test(test_host_batch SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_host_batch.c
                 LIBS twinedge_host twinedge_core TIMEOUT 60)
add_dependencies(test_host_batch twinedge-plugin-cpu)

# The plaintext baseline of the benchmarks (MODE_PLAIN) and te_f32.
te_add_unit_test(test_host_plain SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_host_plain.c
                 LIBS twinedge_host twinedge_core twinedge_f32 m TIMEOUT 60)
add_dependencies(test_host_plain twinedge-plugin-cpu)

# EdgeB's precompute cache (te_host_config.precompute_mb).
te_add_unit_test(test_host_precompute SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_host_precompute.c
                 LIBS twinedge_host twinedge_core TIMEOUT 120)
add_dependencies(test_host_precompute twinedge-plugin-cpu)
# ... and end to end: the device SDK against an in-process pair (lenet5).
te_add_unit_test(test_host_precompute_e2e SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_host_precompute_e2e.c
                 LIBS twinedge_owner twinedge_runlib twinedge_host twinedge_device_static twinedge_core TIMEOUT 300)
add_dependencies(test_host_precompute_e2e twinedge-plugin-cpu)
set_tests_properties(test_host_precompute_e2e PROPERTIES FIXTURES_REQUIRED testdata)

# The host's Prometheus metrics: exposition text and its HTTP endpoint.
te_add_unit_test(test_metrics SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_metrics.c LIBS twinedge_hostd_metrics
                 TIMEOUT 60)
