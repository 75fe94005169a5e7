# Operating the hosts: deploy/ (systemd, Kubernetes) and twinedge-probe.
#   deploy_files   systemd-analyze verify, kubectl kustomize + checks of the rendered manifests
#   probe          twinedge-probe against real hosts over mutual TLS
add_test(NAME deploy_files COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/deploy/deploy_files_test.sh ${PROJECT_SOURCE_DIR}
         $<TARGET_FILE:twinedge-host>)
set_tests_properties(deploy_files PROPERTIES TIMEOUT 120 LABELS deploy)
add_test(NAME probe COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/deploy/probe_test.sh $<TARGET_FILE:twinedge-probe>)
set_tests_properties(probe PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 180 LABELS deploy
                     ENVIRONMENT "${TE_ATTACK_ENV}")
#   ops            health, Prometheus (a real server), logs, sd_notify, SIGHUP, config on real hosts
add_test(NAME ops COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/deploy/ops_test.sh $<TARGET_FILE:twinedge-probe>
         $<TARGET_FILE:twinedge-infer>)
set_tests_properties(ops PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT 300 LABELS deploy
                     ENVIRONMENT "${TE_ATTACK_ENV}")
#   containerfile  the Containerfile's runtime stage holds every library the installed host, probe and plugins load
#   (not in sanitizer builds: their programs load libasan/libubsan, which no image ships)
if(NOT TE_SANITIZE)
  add_test(NAME containerfile COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/deploy/containerfile_test.sh ${PROJECT_SOURCE_DIR}
           ${CMAKE_BINARY_DIR})
  set_tests_properties(containerfile PROPERTIES TIMEOUT 120 LABELS deploy)
endif()
