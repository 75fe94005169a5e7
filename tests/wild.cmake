# Issue 12: models as other exporters write them (opsets 7..21, open input
# dimensions, shape sub-graphs, Resize/Upsample, ConvTranspose, attention).
# Fixture "wild": ${TE_TEST_DATA}/wild/ from tests/models/wild_zoo.py (~25 s
# the first time; regenerated when the generator changes).
set(TE_WILD_DATA ${TE_TEST_DATA}/wild)
add_test(NAME wild_testdata COMMAND ${TE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/models/wild_zoo.py ${TE_WILD_DATA})
set_tests_properties(wild_testdata PROPERTIES FIXTURES_SETUP wild TIMEOUT 300 LABELS "data")

# import + float execution of every model against its reference; --input-shape
te_add_unit_test(test_wild_import SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_wild_import.c
                 LIBS twinedge_owner twinedge_exec twinedge_core m TIMEOUT 300)
set_tests_properties(test_wild_import PROPERTIES FIXTURES_REQUIRED wild)

# private inference of each (compiled with its calibration data, which fixes
# the open dimensions): bit-exact to the fixed-point reference, cosine to the
# float reference >= 0.9999 (test_exact, tests/integration.cmake)
execute_process(COMMAND ${TE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/models/wild_zoo.py --list
                OUTPUT_VARIABLE TE_WILD_MODELS RESULT_VARIABLE TE_WILD_RC)
if(NOT TE_WILD_RC EQUAL 0)
  message(FATAL_ERROR "cannot list the issue-12 test models (is python3-torch installed?)")
endif()
string(STRIP "${TE_WILD_MODELS}" TE_WILD_MODELS)
string(REPLACE "\n" ";" TE_WILD_MODELS "${TE_WILD_MODELS}")
foreach(m ${TE_WILD_MODELS})
  add_test(NAME exact_${m} COMMAND test_exact ${m})
  set_tests_properties(exact_${m} PROPERTIES FIXTURES_REQUIRED wild TIMEOUT 600
    ENVIRONMENT "TE_TEST_DATA=${TE_WILD_DATA};TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")
endforeach()

# the command lines: twinedge-owner compile --input-shape, twinedge-run taking
# the open dimensions from its input tensor
add_test(NAME wild_cli COMMAND sh ${PROJECT_SOURCE_DIR}/owner/tests/wild_cli_test.sh
         $<TARGET_FILE:twinedge-owner> $<TARGET_FILE:twinedge-run> ${TE_WILD_DATA})
set_tests_properties(wild_cli PROPERTIES FIXTURES_REQUIRED wild TIMEOUT 300
  ENVIRONMENT "TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")
