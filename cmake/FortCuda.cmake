# The optional CUDA backend (FORT_ENABLE_CUDA=ON): included by the top-level CMakeLists.txt after
# the `fort` target exists. Nothing here runs when the option is off, so CPU users need no CUDA.
#
# Provides fort::cuda, an INTERFACE target: fort's headers + CUDA::cudart + CUDA::cublas and the
# nvcc flags the headers need. Link it from a target with .cu sources:
#   target_link_libraries(my_sampler PRIVATE fort::cuda)

# Must be set before enable_language(CUDA), which would otherwise pick nvcc's own default.
# 80 = A100, 90 = H100/H200; override with -DCMAKE_CUDA_ARCHITECTURES=... (CI builds only 90).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures fort's CUDA targets are built for")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
message(STATUS "fort: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")

add_library(fort_cuda INTERFACE)
add_library(fort::cuda ALIAS fort_cuda)
set_target_properties(fort_cuda PROPERTIES EXPORT_NAME cuda)
# C++20 for nvcc as a plain flag: CMake 3.25 does not know CUDA 13's language levels, so the
# cuda_std_20 compile feature would be rejected.
target_link_libraries(fort_cuda INTERFACE fort CUDA::cudart CUDA::cublas)
# --expt-relaxed-constexpr: std::numeric_limits<S>::min() in the spline's device code.
# 20012: Eigen's defaulted __host__ __device__ members (harmless, one line per Eigen class).
target_compile_options(fort_cuda INTERFACE
  $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --expt-relaxed-constexpr -diag-suppress=20012>)
install(TARGETS fort_cuda EXPORT fortTargets)

add_subdirectory(${PROJECT_SOURCE_DIR}/benchmarks/cuda ${PROJECT_BINARY_DIR}/benchmarks/cuda)
