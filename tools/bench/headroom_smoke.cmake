# ctest script (cmake -P): `twinedge-bench headroom` on the reduced AlexNet
# with PNGs written by tests/unit/image_ref.py's encoder, calibrated on
# MODEL.calib.npy and then on one of the PNGs (--calibrate-photos); checks
# the JSON contract: four inputs (crop, stretch, each mirrored), counts
# within range, cosines in (0, 1] (no figure asserted: they are what the
# command measures).
# Inputs: -DBENCH=<twinedge-bench> -DMODELS=<testdata dir> -DOUT=<dir>
#         -DPYTHON=<python3 with numpy> -DIMAGE_REF=<tests/unit/image_ref.py>
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
get_filename_component(ref_dir ${IMAGE_REF} DIRECTORY)
execute_process(COMMAND ${PYTHON} -c
  "import sys; sys.path.insert(0, sys.argv[1]); import image_ref as r; r.png(sys.argv[2], r.pattern(300, 400, 3, 7)); r.png(sys.argv[3], r.pattern(240, 200, 3, 8))"
  ${ref_dir} ${OUT}/photo.png ${OUT}/photo2.png RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "could not write the test PNG (${rc})")
endif()
# Run `twinedge-bench headroom ARGS...`; fail naming WHAT when it fails.
function(run_headroom what)
  execute_process(COMMAND ${BENCH} headroom --models-dir ${MODELS} --models alexnet ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "twinedge-bench headroom ${what} failed (${rc})")
  endif()
endfunction()

run_headroom("" --json ${OUT}/headroom.json ${OUT}/photo.png)
file(READ ${OUT}/headroom.json json)
string(JSON n ERROR_VARIABLE jerr GET "${json}" models alexnet inputs)
if(jerr OR NOT n EQUAL 4)
  message(FATAL_ERROR "expected 4 inputs, found '${n}' ${jerr}")
endif()
string(JSON layers GET "${json}" models alexnet layers)
string(JSON wl GET "${json}" models alexnet layers_widened)
string(JSON wi GET "${json}" models alexnet inputs_widened)
if(NOT layers EQUAL 32 OR wl LESS 0 OR wl GREATER layers OR wi LESS 0 OR wi GREATER 4)
  message(FATAL_ERROR "counts out of range: ${layers} layers, ${wl} widened, ${wi} inputs widened")
endif()
foreach(key cosine_min cosine_median)
  string(JSON c GET "${json}" models alexnet ${key})
  if(NOT c GREATER 0 OR c GREATER 1.000001)
    message(FATAL_ERROR "${key} ${c} out of (0, 1]")
  endif()
endforeach()

run_headroom(--calibrate-photos --calibrate-photos 1 --json ${OUT}/calibrated.json ${OUT}/photo2.png ${OUT}/photo.png)
file(READ ${OUT}/calibrated.json json)
string(JSON nc GET "${json}" calibration_photos)
string(JSON n GET "${json}" models alexnet inputs)
if(NOT nc EQUAL 1 OR NOT n EQUAL 4)
  message(FATAL_ERROR "--calibrate-photos 1 of 2 photos: expected 1 calibration photo and 4 inputs, got ${nc}, ${n}")
endif()
