# TWINEDGE_DEVICE_ONLY: besides libtwinedge-device (device-sdk/), the
# command-line device (twinedge-infer) and the ring self-check that runs on
# the target (under qemu-user in scripts/cross-build.sh).
add_executable(twinedge-infer ${PROJECT_SOURCE_DIR}/tools/twinedge_infer.c)
target_link_libraries(twinedge-infer PRIVATE twinedge_device_net twinedge_image twinedge_core)
install(TARGETS twinedge-infer RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

add_executable(te-ring-check ${PROJECT_SOURCE_DIR}/tests/unit/ring_check.c)
target_link_libraries(te-ring-check PRIVATE twinedge_core)
