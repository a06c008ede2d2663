// collective_staged.h: the NcclCollective interface over any host
// Collective (Gloo, or the in-process thread collective of the tests), with
// device buffers staged through host memory.
//
// What a GPU rank uses where NCCL cannot serve it: NCCL refuses two ranks on
// one device, so ranks that share a GPU (a test of the trainer's multi-rank
// paths on a single GPU, cuda_trainer_dp_test) go through the host instead,
// as PyTorch's Gloo backend does for CUDA tensors. Each call is synchronous
// behind the asynchronous interface: it waits for the work queued on
// `after`, copies the buffer to the host, reduces it there in fp32 (fp64 for
// doubles; 16-bit types are widened and rounded back once, to nearest even;
// an all-gather moves raw bytes) and copies the result back on `after`,
// waiting for that copy, before returning, so wait_all has nothing left to
// wait for. Correct everywhere, overlapped nowhere: for tests and for
// ranks that share a device, not for speed.
#pragma once

#include <memory>

#include "collective.h"
#include "collective_nccl.h"

namespace fw {
namespace cuda {

// `host` must outlive the returned collective (it is not owned).
std::unique_ptr<NcclCollective> make_staged_collective(Collective& host);

}  // namespace cuda
}  // namespace fw
