# The OpenCL compute plugin, on whatever OpenCL implementation is installed
# (PoCL in CI).  No implementation is a test failure, never a skip.

te_add_unit_test(test_opencl_plugin SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_opencl_plugin.c
                 LIBS te_harness twinedge_plugin_loader twinedge_core Threads::Threads m TIMEOUT 600)
add_dependencies(test_opencl_plugin twinedge-plugin-opencl twinedge-plugin-cpu)

# The DGEMM limb path on every linear layer of each test architecture
# (reduced input sizes) at l = 16, 32, 48, 64, against the CPU plugin; the
# full-size AlexNet and ResNet-18 in the slow suite.
# Under the sanitizers, GCC 12's LeakSanitizer crashes at exit scanning a
# thread's dynamic TLS after the VGG-16 run ("DTLS 13 at 0x16d-0x40000126f",
# "Tracer caught signal 11"; a bogus range it reads itself, with glibc 2.36):
# the leak check still runs, without TLS as roots.
set(TE_OCL_ARCH_ENV "")
if(TE_SANITIZE)
  set(TE_OCL_ARCH_ENV ";LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:use_tls=0")
endif()
foreach(m ${TE_ARCH_MODELS})
  add_test(NAME test_opencl_dgemm_${m} COMMAND test_opencl_plugin --arch ${m})
  set_tests_properties(test_opencl_dgemm_${m} PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 900 LABELS opencl
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}${TE_OCL_ARCH_ENV}")
endforeach()
foreach(m alexnet resnet18)
  add_test(NAME test_opencl_dgemm_full_${m} COMMAND test_opencl_plugin --arch ${m})
  set_tests_properties(test_opencl_dgemm_full_${m} PROPERTIES FIXTURES_REQUIRED testdata_full TIMEOUT 3600
    LABELS "slow;opencl"
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA}/full;TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}${TE_OCL_ARCH_ENV}")
endforeach()

# The same binary with the ICD loader pointed at an empty vendor directory:
# create() must report that no platform exists.
set(TE_OCL_EMPTY_ICD_DIR ${CMAKE_CURRENT_BINARY_DIR}/opencl-empty-icd)
file(MAKE_DIRECTORY ${TE_OCL_EMPTY_ICD_DIR})
add_test(NAME test_opencl_plugin_no_platform COMMAND test_opencl_plugin --no-platform)
set_tests_properties(test_opencl_plugin_no_platform PROPERTIES ENVIRONMENT
  "TE_TEST_DATA=${TE_TEST_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR};OCL_ICD_VENDORS=${TE_OCL_EMPTY_ICD_DIR};OCL_ICD_FILENAMES=")

# twinedge-bench on the OpenCL plugin: the kernels against CLBlast SGEMM on the
# same device (and each exact path forced), and the quick suite with both
# hosts on OpenCL, whose plaintext outsourcing now runs (run_f32): its JSON
# must carry every ratio, latency_relay_over_plain_outsourcing included.
if(TARGET twinedge-bench)
  add_test(NAME bench_kernels_smoke_opencl
           COMMAND ${CMAKE_COMMAND} -DBENCH=$<TARGET_FILE:twinedge-bench> -DMODELS=${TE_TEST_DATA} -DPLUGIN=opencl
                   -DOUT=${CMAKE_CURRENT_BINARY_DIR}/bench_kernels_smoke_opencl.json
                   -P ${PROJECT_SOURCE_DIR}/tools/bench/smoke.cmake)
  add_test(NAME bench_suite_smoke_opencl
           COMMAND ${CMAKE_COMMAND} -DBENCH=$<TARGET_FILE:twinedge-bench> -DMODELS=${TE_TEST_DATA} -DPLUGIN=opencl
                   -DOUT=${CMAKE_CURRENT_BINARY_DIR}/bench_suite_smoke_opencl
                   -P ${PROJECT_SOURCE_DIR}/tools/bench/suite_smoke.cmake)
  set_tests_properties(bench_kernels_smoke_opencl bench_suite_smoke_opencl PROPERTIES
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}"
    FIXTURES_REQUIRED testdata TIMEOUT 600 LABELS opencl)
endif()
