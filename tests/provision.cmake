# twinedge-owner provision: an existing device name or directory is refused without --force.
add_test(NAME owner_provision_force COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/provision_test.sh
         $<TARGET_FILE:twinedge-owner> ${TE_TEST_DATA})
set_tests_properties(owner_provision_force PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 120)
