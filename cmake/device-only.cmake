# TWINEDGE_DEVICE_ONLY: besides libtwinedge-device (device-sdk/), the
# command-line device (twinedge-infer) and the ring self-check that runs on
# the target (under qemu-user in scripts/cross-build.sh).
pkg_check_modules(TE_CJSON REQUIRED IMPORTED_TARGET libcjson)
add_executable(twinedge-infer ${PROJECT_SOURCE_DIR}/tools/twinedge_infer.c ${PROJECT_SOURCE_DIR}/tools/te_report.c)
target_include_directories(twinedge-infer PRIVATE ${PROJECT_SOURCE_DIR}/tools)
target_link_libraries(twinedge-infer PRIVATE twinedge_device_net twinedge_image twinedge_core PkgConfig::TE_CJSON)
install(TARGETS twinedge-infer RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

add_executable(te-ring-check ${PROJECT_SOURCE_DIR}/tests/unit/ring_check.c)
target_link_libraries(te-ring-check PRIVATE twinedge_core)
