# Image input (PNG/JPEG -> model input), against references made by tests/unit/image_ref.py.
# The test writes its JPEG with Debian's libstb (stb_image_write).
find_library(TE_STB_LIB stb)
if(TE_STB_LIB)
  te_add_unit_test(test_image SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_image.c
                   LIBS twinedge_image twinedge_core ${TE_STB_LIB} m TIMEOUT 60)
  target_compile_definitions(test_image PRIVATE TE_IMAGE_REF_PY="${CMAKE_CURRENT_SOURCE_DIR}/unit/image_ref.py")
endif()
