# Shared by the toolchain-*.cmake files (TE_CROSS_TRIPLE set by them).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${TE_CROSS_TRIPLE}-gcc)
# The sysroot: -DTE_SYSROOT=DIR or $TE_SYSROOT (kept for try_compile).
if(NOT TE_SYSROOT AND DEFINED ENV{TE_SYSROOT})
  set(TE_SYSROOT $ENV{TE_SYSROOT})
endif()
if(NOT TE_SYSROOT)
  message(FATAL_ERROR "cross build: set TE_SYSROOT to the target's root (scripts/cross-build.sh makes one)")
endif()
set(ENV{TE_SYSROOT} ${TE_SYSROOT})
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES TE_SYSROOT)
set(CMAKE_SYSROOT ${TE_SYSROOT})
set(CMAKE_FIND_ROOT_PATH ${TE_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)   # protoc-c runs on the build machine
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# pkg-config reads the target's .pc files and prefixes their paths with the sysroot
set(ENV{PKG_CONFIG_DIR} "")
set(ENV{PKG_CONFIG_LIBDIR} "${TE_SYSROOT}/usr/lib/${TE_CROSS_TRIPLE}/pkgconfig:${TE_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${TE_SYSROOT})
