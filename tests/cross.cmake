# te_ring without unsigned __int128 and on the ARM targets:
#   ring_check, ring_check_portable   tests/unit/ring_check.c natively, both paths
#   ring_qemu                         armhf and aarch64 under qemu-user, same checksum
# The full cross build (sysroot from Debian's packages, libtwinedge-device and
# twinedge-infer for both) is scripts/cross-build.sh.
add_executable(te-ring-check ${CMAKE_CURRENT_SOURCE_DIR}/unit/ring_check.c)
target_link_libraries(te-ring-check PRIVATE twinedge_core)
add_executable(te-ring-check-portable ${CMAKE_CURRENT_SOURCE_DIR}/unit/ring_check.c
               ${PROJECT_SOURCE_DIR}/core/te_ring.c ${PROJECT_SOURCE_DIR}/core/te_error.c)
target_include_directories(te-ring-check-portable PRIVATE ${PROJECT_SOURCE_DIR}/core)
target_compile_definitions(te-ring-check-portable PRIVATE TE_RING_PORTABLE)
target_link_libraries(te-ring-check-portable PRIVATE m)
add_test(NAME ring_check COMMAND te-ring-check)
add_test(NAME ring_check_portable COMMAND te-ring-check-portable)
add_test(NAME ring_qemu COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cross/ring_qemu_test.sh ${PROJECT_SOURCE_DIR}
         $<TARGET_FILE:te-ring-check-portable>)
set_tests_properties(ring_qemu PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS cross)

# The device side cross-built for aarch64 and armhf (sysroot from Debian's
# packages: the first run downloads them) and one private inference per mode
# by the ARM twinedge-infer under qemu-user against this build's x86-64 hosts,
# bit-identical to the native device's.  Slow: a device-only build per target.
foreach(arch arm64 armhf)
  add_test(NAME cross_${arch} COMMAND ${PROJECT_SOURCE_DIR}/scripts/cross-build.sh ${arch} --e2e ${CMAKE_BINARY_DIR})
  set_tests_properties(cross_${arch} PROPERTIES LABELS "cross;slow" TIMEOUT 3600 FIXTURES_REQUIRED testdata
    ENVIRONMENT "TE_CROSS_DIR=${CMAKE_BINARY_DIR}/cross-${arch};TE_TEST_DATA=${TE_TEST_DATA}")
endforeach()
