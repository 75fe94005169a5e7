# Core library unit tests.
te_add_unit_test(test_ring SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ring.c LIBS twinedge_core)
te_add_unit_test(test_prf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_prf.c LIBS twinedge_core)
te_add_unit_test(test_npy SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_npy.c LIBS twinedge_core)
te_add_unit_test(test_bundle SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_bundle.c LIBS twinedge_core)
