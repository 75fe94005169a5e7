# Core library unit tests.
te_add_unit_test(test_ring SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ring.c LIBS twinedge_core)
# The same tests against te_ring.c built without unsigned __int128 (the path
# armhf and other 32-bit targets take), bit-identical to test_ring's.
te_add_unit_test(test_ring_portable SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ring.c
                 ${PROJECT_SOURCE_DIR}/core/te_ring.c ${PROJECT_SOURCE_DIR}/core/te_error.c LIBS m)
target_include_directories(test_ring_portable PRIVATE ${PROJECT_SOURCE_DIR}/core)
target_compile_definitions(test_ring_portable PRIVATE TE_RING_PORTABLE)
te_add_unit_test(test_prf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_prf.c LIBS twinedge_core)
te_add_unit_test(test_wire SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_wire.c LIBS twinedge_core)
te_add_unit_test(test_npy SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_npy.c LIBS twinedge_core)
te_add_unit_test(test_bundle SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_bundle.c LIBS twinedge_core)
