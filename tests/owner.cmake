# Owner tool: ONNX import, compile, provision.
set(TE_OWNER_DATA ${TE_TEST_DATA}/owner)
add_test(NAME owner_testdata
         COMMAND ${TE_PYTHON} ${PROJECT_SOURCE_DIR}/owner/tests/make_owner_models.py ${TE_OWNER_DATA})
set_tests_properties(owner_testdata PROPERTIES FIXTURES_SETUP owner_data TIMEOUT 120)

te_add_unit_test(test_onnx_import SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_onnx_import.c
                 LIBS twinedge_owner twinedge_exec twinedge_core m TIMEOUT 60)
set_tests_properties(test_onnx_import PROPERTIES FIXTURES_REQUIRED owner_data)

add_test(NAME owner_cli
         COMMAND sh ${PROJECT_SOURCE_DIR}/owner/tests/cli_test.sh $<TARGET_FILE:twinedge-owner> ${TE_OWNER_DATA})
set_tests_properties(owner_cli PROPERTIES FIXTURES_REQUIRED owner_data TIMEOUT 60)

# The shared model set (fixture "testdata" from tests/models/make_testdata.py).
add_test(NAME onnx_import_zoo COMMAND test_onnx_import zoo)
set_tests_properties(onnx_import_zoo PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 300
  ENVIRONMENT "TE_TEST_DATA=${TE_TEST_DATA}")
