#pragma once
// lockstep's CUDA emulator (docs/cuda_emulation.md): a hash map from 64-bit keys to cells, for
// the race check's shadow memory (racecheck.cpp) and the profile's distinct sectors
// (profile.cpp). Internal to emu/src.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace lockstep_emu {

// key -> cell, in open addressing. A slot is in use when it carries the current generation, so
// forgetting every key (a launch's, or a block's __shared__ arrays') is one increment.
template <class C>
class Shadow {
 public:
  C& at(uintptr_t key) {
    if (2 * (used_ + 1) > slots_.size()) grow();
    for (size_t i = index(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.gen != gen_) {
        s = Slot{key, gen_, C{}};
        ++used_;
        return s.cell;
      }
      if (s.key == key) return s.cell;
    }
  }

  void forget() {
    used_ = 0;
    if (slots_.size() > (size_t{1} << 20)) {
      std::vector<Slot>().swap(slots_);  // give a large launch's memory back
    } else if (++gen_ == 0) {
      for (Slot& s : slots_) s.gen = 0;
      gen_ = 1;
    }
  }

 private:
  struct Slot {
    uintptr_t key = 0;
    uint32_t gen = 0;  // 0: never used
    C cell;
  };

  size_t index(uintptr_t key) const {
    return static_cast<size_t>((key * 0x9e3779b97f4a7c15ull) >> 20) & mask_;
  }

  void grow() {
    std::vector<Slot> old(std::max<size_t>(1024, 2 * slots_.size()));
    old.swap(slots_);
    mask_ = slots_.size() - 1;
    const uint32_t gen = gen_;
    gen_ = 1;
    used_ = 0;
    for (const Slot& s : old)
      if (s.gen == gen) at(s.key) = s.cell;
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0, used_ = 0;
  uint32_t gen_ = 1;
};

}  // namespace lockstep_emu
