# The executor and the non-linear ops (device-sdk/src/exec.c, ops.c).

# Reference vectors for test_ops, computed with PyTorch / NumPy at build time.
set(TE_OPS_VECTORS_DIR ${TE_TEST_DATA}/ops)
add_custom_command(
  OUTPUT ${TE_OPS_VECTORS_DIR}/manifest.txt
  COMMAND ${TE_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/unit/gen_ops_vectors.py ${TE_OPS_VECTORS_DIR}
  DEPENDS ${CMAKE_CURRENT_LIST_DIR}/unit/gen_ops_vectors.py
  COMMENT "Generating op reference vectors (PyTorch)")
add_custom_target(te_ops_vectors DEPENDS ${TE_OPS_VECTORS_DIR}/manifest.txt)

te_add_unit_test(test_ops SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/test_ops.c LIBS twinedge_exec TIMEOUT 60)
add_dependencies(test_ops te_ops_vectors)

te_add_unit_test(test_exec SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/test_exec.c LIBS twinedge_exec TIMEOUT 60)
