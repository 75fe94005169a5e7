# Cross build for 32-bit ARM Linux, hard float (Debian armhf, Raspberry Pi
# OS) with Debian's cross gcc (gcc-arm-linux-gnueabihf).  The target's
# libraries come from a sysroot:
#   cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-arm-linux-gnueabihf.cmake -DTE_SYSROOT=DIR ...
# scripts/cross-build.sh builds such a sysroot from Debian's packages.
set(TE_CROSS_TRIPLE arm-linux-gnueabihf)
set(CMAKE_SYSTEM_PROCESSOR arm)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-common.cmake)
