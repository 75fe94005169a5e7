# Detection models (issue 12's detection families): several graph outputs
# and, as they are supported, the heads' post-processing ops.  Fixture
# "detect": ${TE_TEST_DATA}/detect/ from tests/models/detect_zoo.py (a few
# seconds; regenerated when the generator changes).
set(TE_DETECT_DATA ${TE_TEST_DATA}/detect)
add_test(NAME detect_testdata COMMAND ${TE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/models/detect_zoo.py ${TE_DETECT_DATA})
set_tests_properties(detect_testdata PROPERTIES FIXTURES_SETUP detect TIMEOUT 300 LABELS "data")

# import and float run of every output; private run (hosts in process), every
# output through twinedge_output_get, bit-exact to the fixed-point reference
te_add_unit_test(test_detect SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_detect.c LIBS te_harness
                 TIMEOUT 300)
add_dependencies(test_detect twinedge-plugin-cpu)
set_tests_properties(test_detect PROPERTIES FIXTURES_REQUIRED detect
  ENVIRONMENT "TE_TEST_DATA=${TE_DETECT_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")
