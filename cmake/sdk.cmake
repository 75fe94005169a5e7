# The installed SDKs: the device SDK (libtwinedge-device, device-sdk/) and
# the plugin SDK (plugins/te_plugin.h) as pkg-config files and a CMake
# package, find_package(twinedge) -> twinedge::device, twinedge::plugin.

# One section per function in what goes into libtwinedge-device, so its
# --gc-sections link drops what the device never calls (the bundle writer
# and with it the Brotli encoder).
foreach(t twinedge_exec twinedge_core twinedge_proto_wire twinedge_net twinedge_net_transport)
  target_compile_options(${t} PRIVATE -ffunction-sections -fdata-sections)
endforeach()

include(CMakePackageConfigHelpers)
set(TE_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/twinedge)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/twinedgeConfig.cmake.in
  ${CMAKE_BINARY_DIR}/twinedgeConfig.cmake INSTALL_DESTINATION ${TE_CMAKE_INSTALL_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/twinedgeConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(EXPORT twinedgeTargets NAMESPACE twinedge:: DESTINATION ${TE_CMAKE_INSTALL_DIR})
install(FILES ${CMAKE_BINARY_DIR}/twinedgeConfig.cmake ${CMAKE_BINARY_DIR}/twinedgeConfigVersion.cmake
        DESTINATION ${TE_CMAKE_INSTALL_DIR})

# pkg-config: twinedge-device (the app's library), twinedge-plugin (headers
# only).  prefix is found from the .pc file's place, so an installed tree
# can be moved (cmake --install --prefix DIR works as is).
file(TO_CMAKE_PATH "${CMAKE_INSTALL_LIBDIR}/pkgconfig" TE_PC_REL)
string(REGEX REPLACE "[^/]+" ".." TE_PC_UP "${TE_PC_REL}")
set(TE_PCS twinedge-device)
if(NOT TWINEDGE_DEVICE_ONLY)
  list(APPEND TE_PCS twinedge-plugin)
endif()
foreach(pc ${TE_PCS})
  configure_file(${CMAKE_CURRENT_LIST_DIR}/${pc}.pc.in ${CMAKE_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
