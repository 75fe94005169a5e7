# Issue 12's "done when": exports at opsets 7..12 with open dimensions,
# compiled with --input-shape (or a shaped input) and run privately through
# real hosts on loopback, match onnxruntime on the same input
# (tests/ort/ort_check.py; label "ort").  onnxruntime is onnxruntime-node
# from npm, pinned in tests/ort/package-lock.json and installed into
# tests/ort/node_modules by scripts/install-deps.sh (npm ci --ignore-scripts).
# Without node or the module the tests are still registered and FAIL with
# the reason: a missing reference must not pass as a skipped check.
set(TE_ORT_DIR ${CMAKE_CURRENT_SOURCE_DIR}/ort)
set(TE_ORT_DATA ${TE_TEST_DATA}/wild) # fixture "wild" (tests/wild.cmake)
set(TE_ORT_MODULES ${TE_ORT_DIR}/node_modules CACHE PATH
    "node_modules directory holding onnxruntime-node (scripts/install-deps.sh: npm ci in tests/ort)")
find_program(TE_NODE NAMES node nodejs)
file(READ ${TE_ORT_DIR}/package.json TE_ORT_PKG)
string(JSON TE_ORT_WANT GET "${TE_ORT_PKG}" dependencies onnxruntime-node)
set(TE_ORT_PROBLEM "")
if(NOT TE_NODE)
  set(TE_ORT_PROBLEM "node not found (Debian: nodejs npm)")
else()
  # loading the module proves its native binding works on this machine
  execute_process(COMMAND ${TE_NODE} -e
    "const d=process.argv[1]+'/onnxruntime-node';require(d);process.stdout.write(require(d+'/package.json').version)"
    ${TE_ORT_MODULES} OUTPUT_VARIABLE TE_ORT_HAVE ERROR_VARIABLE TE_ORT_ERR RESULT_VARIABLE TE_ORT_RC)
  if(NOT TE_ORT_RC EQUAL 0)
    set(TE_ORT_PROBLEM "onnxruntime-node cannot be loaded from ${TE_ORT_MODULES}")
  elseif(NOT TE_ORT_HAVE STREQUAL TE_ORT_WANT)
    set(TE_ORT_PROBLEM "${TE_ORT_MODULES} holds onnxruntime-node ${TE_ORT_HAVE}, tests/ort/package.json pins ${TE_ORT_WANT}")
  endif()
endif()
if(TE_ORT_PROBLEM)
  message(WARNING "${TE_ORT_PROBLEM}: the tests labelled ort will fail; run scripts/install-deps.sh "
          "(or npm ci --ignore-scripts in tests/ort) and configure again")
endif()

# MODEL[:H,W][:top1]: with H,W the input is a seeded random one of that
# size, fixed with --input-shape (the file leaves H and W open); without,
# MODEL.input.npy (open N only).  top1: a classifier, whose private argmax
# must be onnxruntime's.  TE_ORT_SLOW: the larger exports (5 to 25 s each),
# labelled slow; the default run's ort tests take about 50 s of one core.
set(TE_ORT_MODELS
  # PyTorch exports at opsets 9 and 11 with dynamic axes
  wild_lenet5_o9:top1 wild_resnet18_o9:40,36:top1 wild_vit_o11:top1
  wild_fpn_o9:24,28 wild_fpn_o11:20,36 wild_unet_o9:24,20 wild_unet_o11:8,16
  # hand-built (open N), one per version-dependent form at opsets 7..12
  v_upsample_o7 v_upsample_o9 v_resize_o10 v_resize_o11 v_convtranspose_o11 v_clip_o7 v_clip_o12
  v_bn_o7 v_slice_o9 v_reduce_o11 v_split_o11 v_shapes_o9 v_misc_o9)
set(TE_ORT_SLOW
  wild_resnet18_o11:24,40:top1 wild_squeezenet11_o9:top1 wild_mobilenetv2_o11:40,40:top1
  wild_alexnet_o9:top1 wild_facenet_o9 wild_vgg16_o11:48,32:top1 wild_resnet50_o11:32,48:top1
  # later opsets
  wild_vit_o17:top1 v_resize_o13 v_resize_o19 v_bn_o15 v_slice_o13 v_reduce_o13 v_reduce_o18 v_split_o13 v_split_o18
  v_elementwise_o13 v_elementwise_o17 v_shapes_o13 v_misc_o13 v_misc_o20)
foreach(spec ${TE_ORT_MODELS} ${TE_ORT_SLOW})
  string(REPLACE ":" ";" parts "${spec}")
  list(POP_FRONT parts m)
  set(args "")
  foreach(p ${parts})
    if(p STREQUAL "top1")
      list(APPEND args --top1)
    else()
      list(APPEND args --hw ${p})
    endif()
  endforeach()
  if(TE_ORT_PROBLEM)
    add_test(NAME ort_${m} COMMAND sh -c "echo \"$0\" >&2; exit 1"
             "ort_${m}: no onnxruntime to compare with: ${TE_ORT_PROBLEM} (scripts/install-deps.sh)")
  else()
    add_test(NAME ort_${m} COMMAND ${TE_PYTHON} ${TE_ORT_DIR}/ort_check.py --node ${TE_NODE}
             --run $<TARGET_FILE:twinedge-run> --data ${TE_ORT_DATA} ${args} ${m})
  endif()
  set(labels ort)
  if(spec IN_LIST TE_ORT_SLOW)
    set(labels "ort;slow")
  endif()
  set_tests_properties(ort_${m} PROPERTIES LABELS "${labels}" FIXTURES_REQUIRED wild TIMEOUT 300
    ENVIRONMENT "TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR};TE_ORT_MODULES=${TE_ORT_MODULES}")
endforeach()
# detection models (tests/detect.cmake): every output compared
execute_process(COMMAND ${TE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/models/detect_zoo.py --list
                OUTPUT_VARIABLE TE_DETECT_MODELS RESULT_VARIABLE TE_DETECT_RC)
if(NOT TE_DETECT_RC EQUAL 0)
  message(FATAL_ERROR "cannot list the detection test models (is python3-torch installed?)")
endif()
string(STRIP "${TE_DETECT_MODELS}" TE_DETECT_MODELS)
string(REPLACE "\n" ";" TE_DETECT_MODELS "${TE_DETECT_MODELS}")
foreach(m ${TE_DETECT_MODELS})
  if(TE_ORT_PROBLEM)
    add_test(NAME ort_${m} COMMAND sh -c "echo \"$0\" >&2; exit 1"
             "ort_${m}: no onnxruntime to compare with: ${TE_ORT_PROBLEM} (scripts/install-deps.sh)")
  else()
    add_test(NAME ort_${m} COMMAND ${TE_PYTHON} ${TE_ORT_DIR}/ort_check.py --node ${TE_NODE}
             --run $<TARGET_FILE:twinedge-run> --data ${TE_TEST_DATA}/detect ${m})
  endif()
  set_tests_properties(ort_${m} PROPERTIES LABELS ort FIXTURES_REQUIRED detect TIMEOUT 300
    ENVIRONMENT "TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR};TE_ORT_MODULES=${TE_ORT_MODULES}")
endforeach()
# an integer output with two rows swapped must fail the comparison (exit
# status 1, not a tool failure): NonMaxSuppression's selection, and the box
# indices gathered from it by an exported post-processing tail
foreach(neg "ort_negative_indices;det_ssd_nms_o11;2" "ort_negative_tail_indices;det_torch_ssd_tail_o11;1")
  list(GET neg 0 name)
  list(GET neg 1 model)
  list(GET neg 2 out)
  if(TE_ORT_PROBLEM)
    add_test(NAME ${name} COMMAND sh -c "echo \"$0\" >&2; exit 1"
             "${name}: no onnxruntime to compare with: ${TE_ORT_PROBLEM} (scripts/install-deps.sh)")
  else()
    add_test(NAME ${name} COMMAND env TE_SWAP_RUN=$<TARGET_FILE:twinedge-run> TE_SWAP_OUTPUT=${out}
             sh -c "\"$0\" \"$@\"; test $? -eq 1" ${TE_PYTHON} ${TE_ORT_DIR}/ort_check.py --node ${TE_NODE}
             --run ${TE_ORT_DIR}/swap_run.py --data ${TE_TEST_DATA}/detect ${model})
  endif()
  set_tests_properties(${name} PROPERTIES LABELS ort FIXTURES_REQUIRED detect TIMEOUT 120
    ENVIRONMENT "TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR};TE_ORT_MODULES=${TE_ORT_MODULES}")
endforeach()
# the comparison fails when it should: altered copies of a model
if(TE_ORT_PROBLEM)
  add_test(NAME ort_negative COMMAND sh -c "echo \"$0\" >&2; exit 1"
           "ort_negative: no onnxruntime to compare with: ${TE_ORT_PROBLEM} (scripts/install-deps.sh)")
else()
  add_test(NAME ort_negative COMMAND ${TE_PYTHON} ${TE_ORT_DIR}/ort_check.py --node ${TE_NODE}
           --run $<TARGET_FILE:twinedge-run> --data ${TE_ORT_DATA} --top1 --negative wild_lenet5_o9)
endif()
set_tests_properties(ort_negative PROPERTIES LABELS ort FIXTURES_REQUIRED wild TIMEOUT 120
  ENVIRONMENT "TWINEDGE_PLUGIN_DIR=${TE_PLUGIN_BUILD_DIR};TE_ORT_MODULES=${TE_ORT_MODULES}")
