// collective_gloo.h: the Gloo backend of collective.h (CPU ranks over TCP).
//
// Rendezvous: every rank's TCP device address goes through the trainer's
// HTTP store (store_client.h) under the run's base URL; Gloo connects the full
// mesh from there. Only compiled in when CMake finds Gloo (FW_HAVE_GLOO).
#pragma once

#include <memory>

#include "collective.h"

namespace fw {

// Join the other env.world_size - 1 ranks; throws CollectiveError with
// kRendezvousTimeout when they do not all arrive within env.join_timeout_ms.
std::unique_ptr<Collective> make_gloo_collective(const CollectiveEnv& env);

}  // namespace fw
