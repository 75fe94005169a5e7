# The deployment CA (mutual TLS credentials), a library of its own.
add_library(twinedge_pki STATIC ${CMAKE_CURRENT_LIST_DIR}/pki.c)
target_include_directories(twinedge_pki PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(twinedge_pki PUBLIC twinedge_core OpenSSL::Crypto)

# twinedge-owner deploy over gRPC (te_owner_deploy), for the CLI to wire in.
add_library(twinedge_owner_deploy STATIC ${CMAKE_CURRENT_LIST_DIR}/deploy.c)
target_include_directories(twinedge_owner_deploy PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(twinedge_owner_deploy PUBLIC twinedge_net_transport twinedge_proto_service twinedge_core)
