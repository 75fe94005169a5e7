# In-process integration tests: the device and both hosts in one process.
add_library(te_harness STATIC ${CMAKE_CURRENT_SOURCE_DIR}/integration/harness.c)
target_include_directories(te_harness PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/integration)
target_link_libraries(te_harness PUBLIC twinedge_owner twinedge_runlib twinedge_host twinedge_device_static twinedge_pki
                      PkgConfig::CMOCKA m)

foreach(t privacy integrity sessions redeploy)
  te_add_unit_test(test_${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_${t}.c LIBS te_harness
                   TIMEOUT 600)
  add_dependencies(test_${t} twinedge-plugin-cpu)
  set_tests_properties(test_${t} PROPERTIES FIXTURES_REQUIRED testdata)
endforeach()

# Exactness and accuracy, one test per architecture (reduced input sizes).
add_executable(test_exact ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_exact.c)
target_link_libraries(test_exact PRIVATE te_harness)
add_dependencies(test_exact twinedge-plugin-cpu)
set(TE_ARCH_MODELS lenet5 alexnet vgg16 resnet18 resnet50 mobilenetv2 squeezenet11 facenet)
# the op-coverage models, as the generator lists them (minus the one that must be refused)
set(TE_ALL_MODELS "")
if(TE_HAVE_TORCH) # (tests/CMakeLists.txt warns otherwise; no op-coverage tests then)
  execute_process(COMMAND ${TE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/models/make_testdata.py ${TE_TEST_DATA} --list
                  OUTPUT_VARIABLE TE_ALL_MODELS RESULT_VARIABLE TE_LIST_RC)
  if(NOT TE_LIST_RC EQUAL 0)
    message(FATAL_ERROR "cannot list the test models (tests/models/make_testdata.py --list failed)")
  endif()
endif()
string(REPLACE "\n" ";" TE_ALL_MODELS "${TE_ALL_MODELS}")
set(TE_OP_MODELS "")
foreach(m ${TE_ALL_MODELS})
  if(m MATCHES "^op_" AND NOT m STREQUAL "op_unsupported")
    list(APPEND TE_OP_MODELS ${m})
  endif()
endforeach()
foreach(m ${TE_ARCH_MODELS} ${TE_OP_MODELS})
  add_test(NAME exact_${m} COMMAND test_exact ${m})
  set_tests_properties(exact_${m} PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 900
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")
endforeach()
# Branch fusion: fused and unfused deployments bit-identical, fewer calls and bytes where branches share an input.
add_executable(test_fuse ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_fuse.c)
target_link_libraries(test_fuse PRIVATE te_harness)
add_dependencies(test_fuse twinedge-plugin-cpu)
foreach(m facenet resnet18 squeezenet11 alexnet)
  set(args "")
  if(NOT m STREQUAL "alexnet")
    set(args --expect-fused)
  endif()
  add_test(NAME fuse_${m} COMMAND test_fuse ${m} ${args})
  set_tests_properties(fuse_${m} PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 900
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")
endforeach()
# every case of the rule (owner/tests/make_owner_models.py: branches): 11 layers, 4 calls, 9 without embedding
add_test(NAME fuse_branches COMMAND test_fuse branches --expect-fused --calls 4 9)
set_tests_properties(fuse_branches PROPERTIES FIXTURES_REQUIRED owner_data TIMEOUT 300
  ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA}/owner;TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")

# Precision by measurement (--precision auto): fewer bits, the target held on the calibration set, stricter
# targets never fewer bits, private inference bit-exact, bad targets refused.  resnet18 has fused branches.
add_executable(test_precision ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_precision.c)
target_link_libraries(test_precision PRIVATE te_harness)
add_dependencies(test_precision twinedge-plugin-cpu)
foreach(m alexnet resnet18)
  add_test(NAME precision_${m} COMMAND test_precision ${m})
  set_tests_properties(precision_${m} PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 300
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")
endforeach()

# Full input sizes (224x224 etc.): the slow suite, `scripts/test.sh -L slow`.
foreach(m ${TE_ARCH_MODELS})
  add_test(NAME exact_full_${m} COMMAND test_exact ${m})
  set_tests_properties(exact_full_${m} PROPERTIES FIXTURES_REQUIRED testdata_full TIMEOUT 3600 LABELS slow
    ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA}/full;TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")
endforeach()

# End to end through the command-line tool.
add_test(NAME cli_twinedge_run
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/cli_run_test.sh $<TARGET_FILE:twinedge-run> ${TE_TEST_DATA})
set_tests_properties(cli_twinedge_run PROPERTIES FIXTURES_REQUIRED "testdata;detect" TIMEOUT 600
  ENVIRONMENT "TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")

# Accuracy on real data: Fashion-MNIST LeNet-5, 10,000 private inferences.
te_add_unit_test(test_fashion SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_fashion.c LIBS te_harness
                 TIMEOUT 900)
add_dependencies(test_fashion twinedge-plugin-cpu)
set_tests_properties(test_fashion PROPERTIES FIXTURES_REQUIRED fashion)

# The OpenCL plugin (PoCL in CI) in real deployments, mixed pairs, fallback.
te_add_unit_test(test_mixed SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_mixed.c LIBS te_harness
                 TIMEOUT 900)
add_dependencies(test_mixed twinedge-plugin-cpu twinedge-plugin-opencl)
set_tests_properties(test_mixed PROPERTIES FIXTURES_REQUIRED testdata)

# The README's two commands on a fresh clone (slow: a whole build and suite).
add_test(NAME readme_quickstart COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/readme_test.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(readme_quickstart PROPERTIES LABELS slow TIMEOUT 5400)
