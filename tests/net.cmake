# The network service: gRPC wrapper + CA, and the edge hosts over mutual TLS.
te_add_unit_test(test_net_wrapper SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_net_wrapper.c
                 LIBS twinedge_net twinedge_pki TIMEOUT 120)

# Two twinedge-host processes over loopback mTLS (needs the testdata fixture).
te_add_unit_test(test_net_hosts SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_net_hosts.c
                 LIBS te_harness twinedge_device_net twinedge_owner_deploy twinedge_pki twinedge_proto_service
                 TIMEOUT 300)
target_compile_definitions(test_net_hosts PRIVATE TE_HOST_BIN="$<TARGET_FILE:twinedge-host>"
                           TE_INFER_BIN="$<TARGET_FILE:twinedge-infer>")
add_dependencies(test_net_hosts twinedge-host twinedge-infer twinedge-plugin-cpu)
set_tests_properties(test_net_hosts PROPERTIES FIXTURES_REQUIRED testdata)

# A fleet: 64 twinedge-infer processes at once against a default host pair,
# twice; then an overloaded pair that refuses unserved and devices that retry.
te_add_unit_test(test_fleet SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_fleet.c
                 LIBS te_harness twinedge_device_net twinedge_owner_deploy twinedge_pki twinedge_proto_service
                 twinedge_proto_health TIMEOUT 600)
target_compile_definitions(test_fleet PRIVATE TE_HOST_BIN="$<TARGET_FILE:twinedge-host>"
                           TE_INFER_BIN="$<TARGET_FILE:twinedge-infer>")
add_dependencies(test_fleet twinedge-host twinedge-infer twinedge-plugin-cpu)
set_tests_properties(test_fleet PROPERTIES FIXTURES_REQUIRED testdata)

# twinedge-bench load: a small fleet from one process against real hosts,
# batching off and on; exit status 3 if any device failed.
add_test(NAME bench_load_smoke
         COMMAND twinedge-bench load --devices 6 --inferences 2 --batch-window-us 0,2000 --timeout-ms 60000)
set_tests_properties(bench_load_smoke PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 300
  ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR};TWINEDGE_HOST=$<TARGET_FILE:twinedge-host>")

# EdgeA's relay-ahead cache between real hosts: hits, EdgeB down after the
# fetch (negative control: off), the cap and evictions, one device, once.
te_add_unit_test(test_relay_ahead SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_relay_ahead.c
                 LIBS te_harness twinedge_device_net twinedge_owner_deploy twinedge_pki twinedge_proto_service
                 TIMEOUT 120)
target_compile_definitions(test_relay_ahead PRIVATE TE_HOST_BIN="$<TARGET_FILE:twinedge-host>")
add_dependencies(test_relay_ahead twinedge-host twinedge-plugin-cpu)
set_tests_properties(test_relay_ahead PROPERTIES FIXTURES_REQUIRED testdata)
