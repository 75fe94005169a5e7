# Scale-out: 2 replicas of each role behind round-robin targets (4 twinedge-host processes).
# Fast variant (2 devices, 40 inferences) in the default suite, full one (8 devices, 1000) labelled slow.
foreach(v test_scaleout test_scaleout_slow)
  if(v STREQUAL "test_scaleout_slow")
    set(_labels LABELS slow)
  else()
    set(_labels)
  endif()
  te_add_unit_test(${v} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_scaleout.c
                   LIBS te_harness twinedge_device_net twinedge_owner_deploy twinedge_pki twinedge_proto_service
                   ${_labels} TIMEOUT 600)
  target_compile_definitions(${v} PRIVATE TE_HOST_BIN="$<TARGET_FILE:twinedge-host>")
  add_dependencies(${v} twinedge-host twinedge-plugin-cpu)
  set_tests_properties(${v} PROPERTIES FIXTURES_REQUIRED testdata)
endforeach()
target_compile_definitions(test_scaleout_slow PRIVATE TE_SCALEOUT_FULL=1)
