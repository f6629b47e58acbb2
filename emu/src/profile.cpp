// lockstep's CUDA emulator (docs/cuda_emulation.md): the memory-access profile.
//
// What a GPU's memory system makes of a kernel depends on how the 32 lanes of a warp access
// memory together, not on what one thread does: one load instruction of a warp is served in
// 32-byte sectors of global memory (a coalesced 4-byte load by 32 lanes: 4 sectors; a
// 128-byte stride between lanes: 32), and in 4-byte words of shared memory spread over 32
// banks (lanes that touch different words of one bank are served one after another: a bank
// conflict). In a build whose kernels are instrumented (LOCKSTEP_EMU_RACECHECK, emu/src/
// racecheck.cpp) every load and store reaches on_access there, and from there profile_access
// here. Lanes run one after another in the emulator, so a block's accesses are kept per lane
// and, when the block ends, matched up into the warp's instructions. A place in the code (the
// call site of the hook: one load or store of the machine code) that every lane reaching it
// reaches equally often is an anchor: its k-th executions by the lanes are one instruction (a
// loop's unconditional loads). Any other place is keyed by the lane's last anchor execution
// and how often the lane reached the place since: the two sides of a divergent branch inside a
// loop, and an inner loop whose trip count differs between lanes, are matched iteration by
// iteration as a GPU issues them. (Where no place is an anchor — a grid-stride loop in which
// some lanes make one trip fewer — a divergent branch in it is matched by count, not by trip.)
//
// Per warp instruction: global memory — the sectors it touches against the fewest the bytes it
// uses could fit in; shared memory — the wavefronts its bank conflicts cost against the fewest;
// atomics — how many lanes update the same address (they serialise). Per launch: the distinct
// sectors read and written (a lower bound of the launch's DRAM traffic when nothing of it is in
// L2 beforehand), the grid's size. Library calls (cuBLAS, CUB, copies) report their bytes and
// FLOPs as they run. emu/profile_report.py turns LOCKSTEP_EMU_PROFILE's file into a table per
// kernel and an estimate of a step's device time on a given GPU.

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "lockstep_emu/runtime.h"
#include "shadow.h"

namespace lockstep_emu {

bool g_profiling = false;

namespace {

constexpr unsigned kSectorShift = 5;  // 32-byte sectors
constexpr unsigned kBanks = 32;       // 4-byte banks of shared memory

// One access of one lane.
struct Event {
  uint64_t phase;  // __syncthreads passed << 32 | __syncwarp rounds passed
  uintptr_t pc, addr;
  uint32_t bytes;
  char kind;
  bool shared;
};

// One warp instruction: the lanes that issue one place together.
struct Group {
  const void* pc = nullptr;
  char kind = 'r';
  bool shared = false;
  uint8_t lanes = 0;
  uintptr_t addr[32];
  uint32_t bytes[32];
};

struct LineKey {
  const char* kernel;
  const void* pc;
  char kind;
  bool shared;
  bool operator==(const LineKey& o) const {
    return kernel == o.kernel && pc == o.pc && kind == o.kind && shared == o.shared;
  }
};
struct LineKeyHash {
  size_t operator()(const LineKey& k) const {
    return std::hash<const void*>()(k.pc) ^ std::hash<const void*>()(k.kernel) * 31 ^
           (size_t(k.kind) << 1 | size_t(k.shared));
  }
};

// Distinct 32-byte sectors of one launch, read (key sector << 1) and written (sector << 1 | 1).
class SectorSet {
 public:
  void insert(uint64_t key) {
    bool& seen = seen_.at(key).seen;
    if (!seen) ++counts_[key & 1];
    seen = true;
  }
  uint64_t reads() const { return counts_[0]; }
  uint64_t writes() const { return counts_[1]; }
  void clear() {
    seen_.forget();
    counts_[0] = counts_[1] = 0;
  }

 private:
  struct Seen {
    bool seen = false;
  };
  Shadow<Seen> seen_;
  uint64_t counts_[2] = {0, 0};
};

struct Launch {
  const char* kernel;
  uint64_t blocks = 0, threads = 0;        // threads per block
  uint64_t requests = 0, sectors = 0;      // global memory: warp instructions, sectors they touch
  uint64_t ideal_sectors = 0;              // the fewest sectors their bytes fit in
  uint64_t dram_read = 0, dram_write = 0;  // distinct sectors read, written
  uint64_t shared_requests = 0, wavefronts = 0, ideal_wavefronts = 0;
  uint64_t atomics = 0, atomic_serial = 0;  // atomic warp instructions; their same-address lanes
};

struct LibraryOp {
  const char* what;
  double bytes, flops;
  char transfer;  // 'd' device, 'h' host to device, 'D' device to host
};

struct InstructionKey {
  uint64_t phase;
  uintptr_t anchor, pc;
  uint64_t anchor_k, j;
  bool operator==(const InstructionKey& o) const {
    return phase == o.phase && anchor == o.anchor && pc == o.pc && anchor_k == o.anchor_k &&
           j == o.j;
  }
};
struct InstructionKeyHash {
  size_t operator()(const InstructionKey& k) const {
    uint64_t h = k.phase * 0x9e3779b97f4a7c15ull;
    for (uint64_t v : {uint64_t(k.anchor), uint64_t(k.pc), k.anchor_k, k.j})
      h = (h ^ v) * 0xc2b2ae3d27d4eb4full;
    return static_cast<size_t>(h ^ (h >> 29));
  }
};

struct PlaceCount {
  uint64_t min = ~uint64_t{0}, max = 0;  // over the lanes that reach it
  uint64_t lane = 0;                     // the current lane's executions so far
  uint64_t since_anchor = 0;             // ... since its last anchor
  uint64_t anchor_gen = 0;               // (since_anchor counts from this anchor)
};

struct State {
  bool env_read = false;
  std::string path;                                  // LOCKSTEP_EMU_PROFILE
  bool range_started = false, range_ended = false;   // cudaProfilerStart, Stop met
  std::vector<std::vector<Event>> events;            // the current block's, per thread
  std::unordered_map<uintptr_t, PlaceCount> places;  // finish_warp's
  std::unordered_map<InstructionKey, uint32_t, InstructionKeyHash> instruction_index;
  std::vector<Group> groups;
  // The current launch, and what was collected.
  bool in_launch = false;
  Launch launch{};
  SectorSet sectors;
  std::vector<Launch> launches;
  std::vector<LibraryOp> ops;
  std::unordered_map<LineKey, ProfileLine, LineKeyHash> lines;
};

State& st() {
  static State* s = new State;  // outlives the exit handler's users
  return *s;
}

// The bytes [addr, addr + bytes) of each lane as sorted, merged ranges.
size_t merged_ranges(const Group& g, std::pair<uintptr_t, uintptr_t>* out) {
  size_t n = 0;
  for (unsigned i = 0; i < g.lanes; ++i) out[n++] = {g.addr[i], g.addr[i] + g.bytes[i]};
  std::sort(out, out + n);
  size_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    if (m > 0 && out[i].first <= out[m - 1].second)
      out[m - 1].second = std::max(out[m - 1].second, out[i].second);
    else
      out[m++] = out[i];
  }
  return m;
}

void finish_group(State& s, const Group& g) {
  std::pair<uintptr_t, uintptr_t> ranges[32];
  const size_t n = merged_ranges(g, ranges);
  uint64_t used = 0;
  for (size_t i = 0; i < n; ++i) used += ranges[i].second - ranges[i].first;
  ProfileLine& line = s.lines[LineKey{s.launch.kernel, g.pc, g.kind, g.shared}];
  if (line.requests == 0) {
    line.kernel = s.launch.kernel;
    line.pc = g.pc;
    line.kind = g.kind;
    line.shared = g.shared;
  }
  line.requests += 1;
  line.lanes += g.lanes;
  line.used_bytes += used;
  uint64_t units = 0, ideal = 0;
  if (g.shared) {
    // Distinct 4-byte words; the busiest bank serves its words one per wavefront.
    unsigned per_bank[kBanks] = {};
    uint64_t words = 0;
    for (size_t i = 0; i < n; ++i)
      for (uintptr_t w = ranges[i].first >> 2; w <= (ranges[i].second - 1) >> 2; ++w) {
        ++per_bank[w % kBanks];
        ++words;
      }
    units = *std::max_element(per_bank, per_bank + kBanks);
    ideal = std::max<uint64_t>(1, (words + kBanks - 1) / kBanks);
    units = std::max(units, ideal);
    s.launch.shared_requests += 1;
    s.launch.wavefronts += units;
    s.launch.ideal_wavefronts += ideal;
  } else {
    uintptr_t last = ~uintptr_t{0};
    for (size_t i = 0; i < n; ++i)
      for (uintptr_t sec = ranges[i].first >> kSectorShift;
           sec <= (ranges[i].second - 1) >> kSectorShift; ++sec) {
        if (sec == last) continue;
        last = sec;
        ++units;
        if (g.kind != 'w') s.sectors.insert(uint64_t{sec} << 1);
        if (g.kind != 'r') s.sectors.insert(uint64_t{sec} << 1 | 1);
      }
    ideal = std::max<uint64_t>(1, (used + 31) >> kSectorShift);
    s.launch.requests += 1;
    s.launch.sectors += units;
    s.launch.ideal_sectors += ideal;
    if (g.kind == 'a') {
      // Lanes that update one address are served one after another.
      unsigned same = 1, run = 1;
      uintptr_t sorted[32];
      for (unsigned i = 0; i < g.lanes; ++i) sorted[i] = g.addr[i];
      std::sort(sorted, sorted + g.lanes);
      for (unsigned i = 1; i < g.lanes; ++i) {
        run = sorted[i] == sorted[i - 1] ? run + 1 : 1;
        same = std::max(same, run);
      }
      s.launch.atomics += 1;
      s.launch.atomic_serial += same;
      line.serial += same;
    }
  }
  line.units += units;
  line.ideal_units += ideal;
}

// The accesses of one warp's lanes (events[0 .. lanes)) as warp instructions.
void finish_warp(State& s, std::vector<Event>* events, unsigned lanes) {
  std::unordered_map<uintptr_t, PlaceCount>& places = s.places;
  places.clear();
  for (unsigned l = 0; l < lanes; ++l) {
    for (const Event& e : events[l]) ++places[e.pc].lane;
    for (auto& [pc, c] : places) {
      if (c.lane == 0) continue;
      c.min = std::min(c.min, c.lane);
      c.max = std::max(c.max, c.lane);
      c.lane = 0;
    }
  }
  std::unordered_map<InstructionKey, uint32_t, InstructionKeyHash>& index = s.instruction_index;
  std::vector<Group>& groups = s.groups;
  index.clear();
  groups.clear();
  for (unsigned l = 0; l < lanes; ++l) {
    for (auto& [pc, c] : places) c.lane = c.since_anchor = c.anchor_gen = 0;
    uintptr_t anchor = 0;
    uint64_t anchor_k = 0, anchor_gen = 1;
    for (const Event& e : events[l]) {
      PlaceCount& c = places[e.pc];
      InstructionKey key{e.phase, 0, e.pc, 0, 0};
      if (c.min == c.max) {
        key.j = c.lane;
        anchor = e.pc;
        anchor_k = c.lane;
        ++anchor_gen;
      } else {
        if (c.anchor_gen != anchor_gen) {
          c.anchor_gen = anchor_gen;
          c.since_anchor = 0;
        }
        key.anchor = anchor;
        key.anchor_k = anchor_k;
        key.j = c.since_anchor++;
      }
      ++c.lane;
      const auto [it, added] = index.try_emplace(key, static_cast<uint32_t>(groups.size()));
      if (added) {
        groups.emplace_back();
        groups.back().pc = reinterpret_cast<const void*>(e.pc);
        groups.back().kind = e.kind;
        groups.back().shared = e.shared;
      }
      Group& g = groups[it->second];
      if (g.lanes == 32) continue;  // (cannot happen: one key per lane and instruction)
      g.addr[g.lanes] = e.addr;
      g.bytes[g.lanes] = e.bytes;
      ++g.lanes;
    }
  }
  for (const Group& g : groups) finish_group(s, g);
}

void write_file(State& s) {
  std::string path = s.path;
  if (const size_t p = path.find("%p"); p != std::string::npos)
    path.replace(p, 2, std::to_string(getpid()));
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "lockstep CUDA emulator: cannot write the profile %s\n", path.c_str());
    return;
  }
  std::fprintf(f, "# lockstep CUDA emulator memory-access profile (emu/src/profile.cpp) v1\n");
  for (const Launch& l : s.launches)
    std::fprintf(f,
                 "launch\t%s\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t"
                 "%llu\n",
                 l.kernel, (unsigned long long)l.blocks, (unsigned long long)l.threads,
                 (unsigned long long)l.requests, (unsigned long long)l.sectors,
                 (unsigned long long)l.ideal_sectors, (unsigned long long)l.dram_read,
                 (unsigned long long)l.dram_write, (unsigned long long)l.shared_requests,
                 (unsigned long long)l.wavefronts, (unsigned long long)l.ideal_wavefronts,
                 (unsigned long long)l.atomics, (unsigned long long)l.atomic_serial);
  for (const LibraryOp& o : s.ops)
    std::fprintf(f, "op\t%s\t%.0f\t%.0f\t%c\n", o.what, o.bytes, o.flops, o.transfer);
  for (const auto& [key, l] : s.lines)
    std::fprintf(f, "line\t%s\t%s\t%c\t%s\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\n", l.kernel,
                 code_place(l.pc).c_str(), l.kind, l.shared ? "shared" : "global",
                 (unsigned long long)l.requests, (unsigned long long)l.lanes,
                 (unsigned long long)l.units, (unsigned long long)l.ideal_units,
                 (unsigned long long)l.used_bytes, (unsigned long long)l.serial);
  std::fclose(f);
  std::fprintf(stderr, "lockstep CUDA emulator: memory-access profile written to %s\n",
               path.c_str());
}

void at_exit() {
  State& s = st();
  if (!s.path.empty()) write_file(s);
}

// LOCKSTEP_EMU_PROFILE, read at the first event.
void read_profile_env() {
  State& s = st();
  if (s.env_read) return;
  s.env_read = true;
  const char* v = std::getenv("LOCKSTEP_EMU_PROFILE");
  if (v == nullptr || *v == '\0') return;
  s.path = v;
  g_profiling = true;
  std::atexit(at_exit);
}

}  // namespace

void profile_launch_begin(const char* kernel, uint64_t blocks, unsigned threads) {
  read_profile_env();
  State& s = st();
  s.in_launch = g_profiling;
  if (!s.in_launch) return;
  s.launch = Launch{};
  s.launch.kernel = kernel;
  s.launch.blocks = blocks;
  s.launch.threads = threads;
  s.sectors.clear();
  if (s.events.size() < threads) s.events.resize(threads);
}

void profile_block_end() {
  State& s = st();
  if (!s.in_launch) return;
  const auto threads = static_cast<unsigned>(s.launch.threads);
  for (unsigned w = 0; w < threads; w += 32)
    finish_warp(s, &s.events[w], std::min(32u, threads - w));
  for (unsigned t = 0; t < threads; ++t) {
    if (s.events[t].capacity() > (size_t{1} << 20))
      std::vector<Event>().swap(s.events[t]);  // give a long block's memory back
    else
      s.events[t].clear();
  }
}

void profile_launch_end() {
  State& s = st();
  if (!s.in_launch) return;
  s.in_launch = false;
  s.launch.dram_read = s.sectors.reads();
  s.launch.dram_write = s.sectors.writes();
  s.launches.push_back(s.launch);
}

void profile_access(const KernelThread& t, uintptr_t addr, size_t bytes, char kind, const void* pc,
                    bool shared) {
  State& s = st();
  if (!s.in_launch || t.thread >= s.launch.threads) return;
  const uint64_t phase = *t.block_phase << 32 | (*t.warp_phase & 0xffffffffu);
  s.events[t.thread].push_back(Event{phase, reinterpret_cast<uintptr_t>(pc), addr,
                                     static_cast<uint32_t>(bytes), kind, shared});
}

void profile_op(const char* what, double bytes, double flops, char transfer) {
  read_profile_env();
  if (!g_profiling) return;
  st().ops.push_back(LibraryOp{what, bytes, flops, transfer});
}

void set_profile(bool on) {
  read_profile_env();
  g_profiling = on;
}

void profile_range(bool start) {
  read_profile_env();
  State& s = st();
  if (s.path.empty() || s.range_ended) return;  // not asked for; or the range is over
  if (start && !s.range_started) {
    s.range_started = true;
    s.launches.clear();
    s.ops.clear();
    s.lines.clear();
  }
  s.range_ended = !start;
  g_profiling = start;
}

std::vector<ProfileLine> take_profile_lines() {
  State& s = st();
  std::vector<ProfileLine> out;
  out.reserve(s.lines.size());
  for (const auto& [key, l] : s.lines) out.push_back(l);
  s.lines.clear();
  s.launches.clear();
  s.ops.clear();
  return out;
}

}  // namespace lockstep_emu
