// train_rng.h: deterministic, serialisable random numbers for init and dropout.
//
// A counter-based generator: value i of stream `key` is a SplitMix64-style
// mix of (key, i). The whole state is two integers, so a checkpoint stores it
// exactly, and any value can be recomputed without replaying the sequence
// (LoRA dropout regenerates its mask during backward / recomputation).
#pragma once

#include <cmath>
#include <cstdint>

namespace fw {

inline uint64_t rng_mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Value `counter` of stream `key`.
inline uint64_t rng_at(uint64_t key, uint64_t counter) { return rng_mix(rng_mix(key) ^ counter); }

// Uniform in [0, 1) with 53 random bits.
inline double rng_u01(uint64_t bits) { return (double)(bits >> 11) * (1.0 / 9007199254740992.0); }

struct Rng {
  uint64_t key = 0;      // the seed
  uint64_t counter = 0;  // values drawn so far

  explicit Rng(uint64_t seed = 0) : key(seed) {}
  uint64_t next_u64() { return rng_at(key, counter++); }
  double uniform() { return rng_u01(next_u64()); }
  // Standard normal by Box-Muller (uses two draws per value, no caching, so
  // the state stays two integers).
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

}  // namespace fw
