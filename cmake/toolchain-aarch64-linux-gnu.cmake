# Cross build for 64-bit ARM Linux (Debian arm64) with Debian's cross gcc
# (gcc-aarch64-linux-gnu).  The target's libraries come from a sysroot:
#   cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake -DTE_SYSROOT=DIR ...
# scripts/cross-build.sh builds such a sysroot from Debian's packages.
set(TE_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-common.cmake)
