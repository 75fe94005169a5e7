# Device-mediated mode: both hosts asked at once, one round trip per layer.
# Real hosts behind the bench's link emulator (D per exchange): a mediated
# inference of N layers under 1.5 N D; the one-after-the-other fallback (the
# negative control) at least 2 N D.
if(TARGET twinedge_linkemu)
  te_add_unit_test(test_mediated_parallel SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_mediated_parallel.c
                   LIBS te_harness twinedge_device_net twinedge_owner_deploy twinedge_pki twinedge_net_transport
                   twinedge_linkemu TIMEOUT 300)
  target_compile_definitions(test_mediated_parallel PRIVATE TE_HOST_BIN="$<TARGET_FILE:twinedge-host>")
  add_dependencies(test_mediated_parallel twinedge-host twinedge-plugin-cpu)
  set_tests_properties(test_mediated_parallel PROPERTIES FIXTURES_REQUIRED testdata)
endif()
