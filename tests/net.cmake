# The network service: gRPC wrapper + CA, and the edge hosts over mutual TLS.
te_add_unit_test(test_net_wrapper SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_net_wrapper.c
                 LIBS twinedge_net twinedge_pki TIMEOUT 120)
