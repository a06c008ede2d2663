# The CUDA backend on the CPU (tests/emu/emu_cuda.h, docs/cuda.md "The
# whole backend on the CPU"): every .cu file but launch.cu (programmatic
# launch, a plain launch here) through ops_emu.py --lib (the tensor-core
# attention's PTX helpers from emu_ptx.h), the host code of native/cuda
# unchanged, and the GPU tests themselves built against it. So the model
# loop, LoRA, distillation, recomputation, fp16 loss scaling, INT8 decode,
# graph decode, the trainer with its overlap and ZeRO-1, and the worker's
# GPU path run in CI on a machine without a GPU.
# Included from native/CMakeLists.txt (needs Python3 and Threads).

set(FW_EMU_LIB_CU ops_rmsnorm ops_embedding ops_swiglu ops_loss optim quant lora_dropout ops_linear cast ops_attention
    ops_rope decode gemv ops_attention_tc)
set(FW_EMU_LIB_DIR ${CMAKE_CURRENT_BINARY_DIR}/emu_backend)
set(FW_EMU_LIB_SRC "")
set(FW_EMU_LIB_ARGS "")
set(FW_EMU_LIB_DEPS ${CMAKE_CURRENT_SOURCE_DIR}/cuda/cuda_common.cuh ${CMAKE_CURRENT_SOURCE_DIR}/cuda/launch.cuh
    ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/ops_emu.py)
foreach(f ${FW_EMU_LIB_CU})
  list(APPEND FW_EMU_LIB_SRC ${FW_EMU_LIB_DIR}/${f}_emu.cc)
  list(APPEND FW_EMU_LIB_ARGS ${f}.cu)
  list(APPEND FW_EMU_LIB_DEPS ${CMAKE_CURRENT_SOURCE_DIR}/cuda/${f}.cu ${CMAKE_CURRENT_SOURCE_DIR}/cuda/${f}.cuh)
endforeach()
file(MAKE_DIRECTORY ${FW_EMU_LIB_DIR})
add_custom_command(OUTPUT ${FW_EMU_LIB_SRC}
                   COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/ops_emu.py --lib
                           ${CMAKE_CURRENT_SOURCE_DIR}/cuda ${FW_EMU_LIB_DIR} ${FW_EMU_LIB_ARGS}
                   DEPENDS ${FW_EMU_LIB_DEPS}
                   COMMENT "native/cuda's kernels for the emulated backend")

set(FW_EMU_HOST_SRC model_cuda.cpp lora_cuda.cpp gemm_cublas.cpp lora_cublas.cpp collective_staged.cpp
    collective_nccl.cpp nccl_shim.cpp)
list(TRANSFORM FW_EMU_HOST_SRC PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/cuda/)
add_library(fw_cuda_emu STATIC ${FW_EMU_LIB_SRC} ${FW_EMU_HOST_SRC} ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/emu_cuda.cc)
# The emulator's cuda_runtime.h, cuda_bf16.h, cuda_fp16.h and cublas_v2.h come before any toolkit's.
target_include_directories(fw_cuda_emu BEFORE PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/include
                           ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu ${CMAKE_CURRENT_SOURCE_DIR}/cuda)
target_link_libraries(fw_cuda_emu PUBLIC fw_engine Threads::Threads ${CMAKE_DL_LIBS})
target_compile_options(fw_cuda_emu PRIVATE -w)  # generated from CUDA source: g++'s warnings are noise

# The emulated runtime's own rules (tests/emu/emu_cuda_test.cpp).
add_executable(emu_cuda_test ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/emu_cuda_test.cpp)
target_link_libraries(emu_cuda_test PRIVATE fw_cuda_emu GTest::gtest_main)
add_test(NAME cuda_emu.emu_cuda_test COMMAND emu_cuda_test)
set_tests_properties(cuda_emu.emu_cuda_test PROPERTIES LABELS cuda_emu)

# The GPU tests against it. What they cannot reach here: NCCL (no library)
# and PyTorch on a GPU.
foreach(name cuda_ops_test cuda_linear_test cuda_lora_test cuda_gemv_test cuda_decode_test cuda_attention_test
        cuda_model_test cuda_trainer_dp_test)
  set(src ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda/${name}.cpp)
  if(NOT EXISTS ${src})
    continue()
  endif()
  add_executable(${name}_emu ${src})
  target_include_directories(${name}_emu PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda)
  target_link_libraries(${name}_emu PRIVATE fw_cuda_emu GTest::gtest_main)
  add_test(NAME cuda_emu.${name} COMMAND ${name}_emu)
  set_tests_properties(cuda_emu.${name} PROPERTIES LABELS cuda_emu ENVIRONMENT
                       "FW_CUDA_TESTS_REQUIRE_GPU=1;FW_NATIVE_ROOT=${CMAKE_CURRENT_SOURCE_DIR};OMP_NUM_THREADS=1")
endforeach()
# The kernel-level tests again with every grid's blocks last to first, so a
# kernel that relies on which block runs first or last fails.
foreach(name cuda_ops_test cuda_decode_test cuda_attention_test cuda_trainer_dp_test)
  if(TARGET ${name}_emu)
    add_test(NAME cuda_emu.${name}.blocks_reversed COMMAND ${name}_emu)
    set_tests_properties(cuda_emu.${name}.blocks_reversed PROPERTIES LABELS cuda_emu ENVIRONMENT
                         "FW_EMU_BLOCK_ORDER=reverse;FW_CUDA_TESTS_REQUIRE_GPU=1;OMP_NUM_THREADS=1")
  endif()
endforeach()

# fw_worker on the emulated backend ("device": "cuda" trains on it), and the
# worker's GPU test against that binary: the worker's whole GPU path (fp32
# against the CPU run, bf16, SIGTERM and resume, fp16 loss scaling, LoRA with
# distillation, ZeRO-1, two ranks sharing the device over Gloo).
if(TARGET fw_worker AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda/cuda_worker_test.cpp)
  add_executable(fw_worker_emu ${FW_WORKER_SOURCES} ${CMAKE_CURRENT_SOURCE_DIR}/worker/cuda/backend_cuda.cpp)
  target_include_directories(fw_worker_emu PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/worker)
  target_compile_definitions(fw_worker_emu PRIVATE FW_HAVE_CUDA)
  target_link_libraries(fw_worker_emu PRIVATE fw_cuda_emu)
  add_executable(cuda_worker_test_emu ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda/cuda_worker_test.cpp)
  target_include_directories(cuda_worker_test_emu PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda)
  target_link_libraries(cuda_worker_test_emu PRIVATE fw_cuda_emu GTest::gtest_main)
  target_compile_definitions(cuda_worker_test_emu PRIVATE FW_WORKER_BIN="$<TARGET_FILE:fw_worker_emu>")
  add_dependencies(cuda_worker_test_emu fw_worker_emu)
  add_test(NAME cuda_emu.cuda_worker_test COMMAND cuda_worker_test_emu)
  set_tests_properties(cuda_emu.cuda_worker_test PROPERTIES LABELS cuda_emu ENVIRONMENT
                       "FW_CUDA_TESTS_REQUIRE_GPU=1;FW_NATIVE_ROOT=${CMAKE_CURRENT_SOURCE_DIR};OMP_NUM_THREADS=1")
endif()

# The model benchmark on the emulated backend, on its tiny config: its
# training, decode, CUDA-graph and per-op profile paths run to the end and
# report sane numbers (tests/emu/check_model_bench.py); the timings mean
# nothing here.
get_filename_component(fw_emu_repo ${CMAKE_CURRENT_SOURCE_DIR}/.. ABSOLUTE)
if(EXISTS ${fw_emu_repo}/bench/engine/cuda/model_bench.cpp)
  add_executable(fw_cuda_model_bench_emu ${fw_emu_repo}/bench/engine/cuda/model_bench.cpp)
  target_link_libraries(fw_cuda_model_bench_emu PRIVATE fw_cuda_emu)
  add_test(NAME cuda_emu.model_bench
           COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/check_model_bench.py
                   $<TARGET_FILE:fw_cuda_model_bench_emu>)
  set_tests_properties(cuda_emu.model_bench PROPERTIES LABELS cuda_emu)
endif()
