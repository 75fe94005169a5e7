# The deployment CA (mutual TLS credentials), a library of its own.
add_library(twinedge_pki STATIC ${CMAKE_CURRENT_LIST_DIR}/pki.c)
target_include_directories(twinedge_pki PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(twinedge_pki PUBLIC twinedge_core OpenSSL::Crypto)
