# CMake toolchain file: cross-compile for 64-bit ARM Linux (Raspberry Pi 3/4/5, other AArch64 boards) with Debian's
# gcc-aarch64-linux-gnu. Use: cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
# Cross-built test programs run under qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR below), so ctest works unchanged.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

# PBS2P_CROSS_PREFIX selects another triplet prefix (e.g. a vendor toolchain); the default is Debian's.
set(PBS2P_CROSS_PREFIX "aarch64-linux-gnu-" CACHE STRING "prefix of the cross compiler executables")
set(CMAKE_C_COMPILER "${PBS2P_CROSS_PREFIX}gcc")

# The target's headers and libraries (Debian: /usr/aarch64-linux-gnu); never the build machine's.
set(PBS2P_SYSROOT_DIR "/usr/aarch64-linux-gnu" CACHE PATH "directory holding the target's include/ and lib/")
set(CMAKE_FIND_ROOT_PATH "${PBS2P_SYSROOT_DIR}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest runs the test binaries through user-mode emulation; the dynamic loader and libc come from the sysroot.
find_program(PBS2P_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(PBS2P_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${PBS2P_QEMU_AARCH64};-L;${PBS2P_SYSROOT_DIR}")
endif()
