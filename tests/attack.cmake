# Adversarial tests (tests/attack): a malicious compute plugin inside real
# twinedge-host processes (loopback, mutual TLS) against twinedge-infer.
#
#   attack_{addp,retry,lattice,faults}   integrity attacks as EdgeA and EdgeB,
#                                        relay and mediated: no wrong result
#                                        may be accepted (LABELS attack)
#   attack_masks                         masks never repeat (tap on EdgeA)
#   attack_keys                          per-device integrity keys, file modes
#   attack_negctl_*                      the same attacks against executables
#                                        with the old behaviour: they must work
#   *_slow                               200 trials per attack (LABELS slow)
#
# The negative controls run twinedge-infer built with the old behaviour:
# the device's sources compiled again with one TE_NEGCTL_* switch each (see
# core/te_linear.c and device-sdk/src/device.c).  Test builds only: these
# executables are never installed, and no release build defines a switch.
set(TE_ATTACK_NEGCTL_TARGETS bound retry session)
set(TE_NEGCTL_DEFS_bound TE_NEGCTL_NO_BOUND)
set(TE_NEGCTL_DEFS_retry TE_NEGCTL_NO_BOUND TE_NEGCTL_HOST_RETRY)
set(TE_NEGCTL_DEFS_session TE_NEGCTL_FIXED_SESSION)
foreach(kind ${TE_ATTACK_NEGCTL_TARGETS})
  string(TOUPPER ${kind} K)
  add_executable(twinedge-infer-negctl-${kind} ${PROJECT_SOURCE_DIR}/tools/twinedge_infer.c
                 ${PROJECT_SOURCE_DIR}/device-sdk/src/device.c ${PROJECT_SOURCE_DIR}/core/te_linear.c)
  # the objects above take the place of the archives' device.o and te_linear.o
  target_compile_definitions(twinedge-infer-negctl-${kind} PRIVATE ${TE_NEGCTL_DEFS_${kind}})
  target_link_libraries(twinedge-infer-negctl-${kind} PRIVATE twinedge_outputs twinedge_device_net twinedge_image
                        twinedge_report twinedge_core)
  if(NOT DEFINED TE_ATTACK_NEGCTL_${K})
    set(TE_ATTACK_NEGCTL_${K} twinedge-infer-negctl-${kind})
  endif()
endforeach()
# TE_ATTACK_NEGCTL_BOUND:   no bound check               (attack_negctl_addp)
# TE_ATTACK_NEGCTL_RETRY:   no bound, widen-and-retry    (attack_negctl_retry)
# TE_ATTACK_NEGCTL_SESSION: fixed nonce, counter from 0  (attack_negctl_masks)

set(TE_ATTACK_DIR ${CMAKE_CURRENT_SOURCE_DIR}/attack)

add_library(twinedge-plugin-evil MODULE ${TE_ATTACK_DIR}/evil_plugin.c)
target_include_directories(twinedge-plugin-evil PRIVATE ${PROJECT_SOURCE_DIR}/plugins)
target_link_libraries(twinedge-plugin-evil PRIVATE twinedge_core Threads::Threads ${CMAKE_DL_LIBS} m)
set_target_properties(twinedge-plugin-evil PROPERTIES PREFIX "lib" C_VISIBILITY_PRESET hidden)

add_executable(te-attack-bundle ${TE_ATTACK_DIR}/bundle_tool.c)
target_link_libraries(te-attack-bundle PRIVATE twinedge_core)

set(TE_ATTACK_ENV
    "TE_HOST=$<TARGET_FILE:twinedge-host>"
    "TE_OWNER=$<TARGET_FILE:twinedge-owner>"
    "TE_EVIL_PLUGIN=$<TARGET_FILE:twinedge-plugin-evil>"
    "TE_CPU_PLUGIN=$<TARGET_FILE:twinedge-plugin-cpu>"
    "TE_ATTACK_BUNDLE=$<TARGET_FILE:te-attack-bundle>"
    "TE_TEST_DATA=${TE_TEST_DATA}"
    "TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR}")

# te_attack_test(NAME TIMEOUT LABELS SCRIPT ARGS...)
function(te_attack_test name timeout labels script)
  add_test(NAME ${name} COMMAND ${TE_ATTACK_DIR}/${script} ${ARGN})
  set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED testdata TIMEOUT ${timeout} LABELS "${labels}"
                       ENVIRONMENT "${TE_ATTACK_ENV}")
endfunction()

set(TE_ATTACK_INFER $<TARGET_FILE:twinedge-infer>)
# Quick: a few trials per attack, role and mode; slow: 200 per attack
# (50 per role and mode; faults: 200 per fault).
foreach(attack addp retry lattice faults)
  te_attack_test(attack_${attack} 300 attack attack_integrity.sh ${attack} 2 ${TE_ATTACK_INFER})
  te_attack_test(attack_${attack}_slow 3600 "attack;slow" attack_integrity.sh ${attack} 50 ${TE_ATTACK_INFER})
endforeach()
te_attack_test(attack_negctl_addp 300 attack attack_integrity.sh addp 2
               $<TARGET_FILE:${TE_ATTACK_NEGCTL_BOUND}> --expect accepted)
te_attack_test(attack_negctl_retry 300 attack attack_integrity.sh retry 2
               $<TARGET_FILE:${TE_ATTACK_NEGCTL_RETRY}> --expect accepted)
te_attack_test(attack_negctl_lattice 300 attack attack_integrity.sh lattice 2 ${TE_ATTACK_INFER}
               --expect accepted --shared-r)

# The faults on a model with fused branches (owner/fuse.c: SqueezeNet's expand
# 1x1 and 3x3 run as one layer; 8 of its 18 layers are fused), random layers.
te_attack_test(attack_faults_fused 600 attack attack_integrity.sh faults 2 ${TE_ATTACK_INFER} --fused 3)
set_property(TEST attack_faults_fused APPEND PROPERTY ENVIRONMENT "TE_ATTACK_MODEL=squeezenet11")

te_attack_test(attack_masks 300 attack attack_masks.sh ${TE_ATTACK_INFER})
# The masks' negative control needs the old hosts too: today's refuse a
# (session, counter, layer) they have served (host/replay.h), so a repeated
# mask would never reach the plugin's tap.  (roles.c holds the guard; its
# object here stands in for the library's.)
add_executable(twinedge-host-negctl-noguard ${PROJECT_SOURCE_DIR}/host/daemon/main.c
               ${PROJECT_SOURCE_DIR}/host/roles.c)
target_compile_definitions(twinedge-host-negctl-noguard PRIVATE TE_NEGCTL_NO_REPLAY_GUARD)
target_link_libraries(twinedge-host-negctl-noguard PRIVATE twinedge_hostd)
te_attack_test(attack_negctl_masks 300 attack attack_masks.sh $<TARGET_FILE:${TE_ATTACK_NEGCTL_SESSION}>
               --expect reuse)
set_property(TEST attack_negctl_masks APPEND PROPERTY ENVIRONMENT
             "TE_HOST=$<TARGET_FILE:twinedge-host-negctl-noguard>")
te_attack_test(attack_keys 120 attack attack_keys.sh)

# Everything the drivers run (building te-attack-bundle builds it all).
add_dependencies(te-attack-bundle twinedge-plugin-evil twinedge-plugin-cpu twinedge-host twinedge-owner twinedge-infer
                 ${TE_ATTACK_NEGCTL_BOUND} ${TE_ATTACK_NEGCTL_RETRY} ${TE_ATTACK_NEGCTL_SESSION}
                 twinedge-host-negctl-noguard)
