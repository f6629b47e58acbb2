// lockstep's CUDA emulator (docs/cuda_emulation.md): the race check.
//
// Fibers never run at once, so a kernel whose threads race (two threads touch one address, at
// least one writes, and nothing orders them) still computes *an* answer here, often the one a
// test expects. A LOCKSTEP_EMU_RACECHECK build compiles the translated kernels with GCC's
// ThreadSanitizer instrumentation (-fsanitize=thread, without its runtime; the emulator's own
// tests always are): every load and store calls a __tsan_* function, defined below, which
// checks the access against the earlier accesses of the same launch to the same address. Two
// accesses are ordered when
//   - one thread made both, or
//   - threads of one block made them with a __syncthreads between them (different block
//     phases), or
//   - lanes of one warp made them with a __syncwarp between them (different warp phases);
// threads of different blocks are never ordered within a launch (launches are, in stream
// order). Atomic operations (atomicAdd & co.) and volatile accesses do not race with each
// other; a plain access and an atomic one to the same address do, unless ordered. An unordered
// pair is a race: the process stops (LOCKSTEP_EMU_RACECHECK=fatal, the default) naming the
// kernel, the address, both threads and both places in the code, or each distinct pair is
// printed once (=report). compute-sanitizer's racecheck looks at shared memory only; this
// check covers global memory too.
//
// Per address, four summaries of the accesses since the last plain write suffice (plain writes,
// plain reads, atomic updates, volatile reads): each keeps the block, phase, warp and thread its
// members share, or "many". Blocks run one after another, so accesses of a block's earlier
// phases are ordered before everything that block does later, and anything another block did
// conflicts with every later access: the summary stays exact for the question asked (do all
// earlier accesses happen before this one?).
//
// Granules: 4-byte words for aligned accesses of 4, 8 or 16 bytes, single bytes for the rest
// (byte and 2-byte accesses, unaligned ones, the edges of struct copies). A byte access is not
// compared with a word access to the same bytes. A thread's own stack is private and not
// checked; `__shared__` arrays are checked per block. A __syncwarp with a partial mask orders
// the whole warp here. Cost: lockstep's GPU tests run about 10 times slower than without the
// instrumentation.

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lockstep_emu/runtime.h"
#include "shadow.h"

namespace lockstep_emu {
namespace {

enum class Mode { Off, Fatal, Report };

#if defined(LOCKSTEP_EMU_RACECHECK)
constexpr bool kHooks = true;
#else
constexpr bool kHooks = false;
#endif

Mode parse_mode(const char* v) {
  if (v == nullptr || *v == '\0') return kHooks ? Mode::Fatal : Mode::Off;
  if (std::strcmp(v, "off") == 0 || std::strcmp(v, "0") == 0) return Mode::Off;
  if (std::strcmp(v, "fatal") == 0 || std::strcmp(v, "1") == 0) return Mode::Fatal;
  if (std::strcmp(v, "report") == 0) return Mode::Report;
  fatal("LOCKSTEP_EMU_RACECHECK=%s: expected off, fatal or report", v);
}

const char* mode_name(Mode m) {
  return m == Mode::Off ? "off" : m == Mode::Fatal ? "fatal" : "report";
}

Mode g_mode = Mode::Off;
bool g_mode_set = false;

Mode mode() {
  if (!g_mode_set) {
    g_mode = parse_mode(std::getenv("LOCKSTEP_EMU_RACECHECK"));
    g_mode_set = true;
  }
  return g_mode;
}

enum Kind : uint8_t { Read, Write, AtomicRead, AtomicWrite };

const char* verb(Kind k) {
  switch (k) {
    case Read:
      return "reads";
    case Write:
      return "writes";
    case AtomicRead:
      return "reads (volatile)";
    default:
      return "updates atomically";
  }
}

constexpr uint32_t kNone = 0xffffffffu;   // Set::block of an empty summary
constexpr uint32_t kMany = 0xfffffffeu;   // Set::block when members are of several blocks
constexpr uint16_t kManyLanes = 0xffffu;  // Set::thread, Set::warp: several

struct Access {
  uint32_t block;
  uint16_t thread, warp;
  uint32_t block_phase, warp_phase;
  uint32_t pc;
  Kind kind;
};

// Places in the code as small numbers (a cell keeps two per kind of access): 0 is none.
std::vector<const void*> g_pcs{nullptr};

uint32_t pc_id(const void* pc) {
  static const void* cache_pc[256] = {};
  static uint32_t cache_id[256] = {};
  const size_t slot = (reinterpret_cast<uintptr_t>(pc) >> 2) & 255;
  if (cache_pc[slot] == pc) return cache_id[slot];
  static std::map<const void*, uint32_t> ids;
  const auto [it, added] = ids.emplace(pc, static_cast<uint32_t>(g_pcs.size()));
  if (added) g_pcs.push_back(pc);
  cache_pc[slot] = pc;
  cache_id[slot] = it->second;
  return it->second;
}

// Accesses of one kind to one granule: what all of them share (see the top of the file), and
// for the report the latest one and the latest by another thread than that one.
struct Member {
  uint32_t block = 0;
  uint16_t thread = 0;
  uint32_t pc = 0;  // pc_id()
};

struct Set {
  uint32_t block = kNone;
  uint16_t thread = 0, warp = 0;
  uint32_t block_phase = 0, warp_phase = 0;
  Member last, other;

  /// Whether every member happens before `a` (a thread's accesses come in program order, a
  /// block's phases only grow, and blocks run one after another).
  bool before(const Access& a) const {
    if (block == kNone) return true;
    if (block != a.block) return false;
    if (a.block_phase > block_phase) return true;
    if (warp == kManyLanes || warp != a.warp) return false;
    if (a.warp_phase > warp_phase) return true;
    return thread == a.thread;
  }

  /// A member that races with `a` (not `a`'s own thread), for the report.
  const Member& against(const Access& a) const {
    return last.block == a.block && last.thread == a.thread ? other : last;
  }

  void add(const Access& a) {
    if (block == kNone || (block == a.block && a.block_phase > block_phase)) {
      block = a.block;  // (members of earlier phases happen before all that follows)
      thread = a.thread;
      warp = a.warp;
      block_phase = a.block_phase;
      warp_phase = a.warp_phase;
    } else if (block != a.block) {
      block = kMany;
    } else if (warp == kManyLanes || warp != a.warp) {
      warp = thread = kManyLanes;
    } else if (a.warp_phase > warp_phase) {
      thread = a.thread;
      warp_phase = a.warp_phase;
    } else if (thread != a.thread) {
      thread = kManyLanes;
    }
    if (last.block != a.block || last.thread != a.thread) other = last;
    last = Member{a.block, a.thread, a.pc};
  }
};

// Per granule, the plain accesses; the atomic ones (rare) live in a table of their own.
struct Cell {
  uint32_t gen = 0;     // the cell holds this generation of its memory's accesses
  bool atomic = false;  // atomic accesses since the last plain write (in the atomic table)
  Set writes, reads;
};
struct AtomicCell {
  Set writes, reads;  // atomic updates, volatile reads
};

// The shadow of byte granules and atomic cells (shadow.h). Keys: (address & ~3) << 1 for a word,
// address << 1 | 1 for a byte.

// The shadow of word granules: a page of cells per 4 KiB of memory, so that neighbouring
// words' cells are neighbours too (kernels mostly sweep arrays). Cells of older generations
// read as empty, so forgetting is one increment; pages stay for the next launches (up to a
// bound on their memory).
class Pages {
 public:
  Cell& at(uintptr_t addr) {
    const uintptr_t page = addr >> 12;
    if (page != last_page_) {
      std::unique_ptr<Page>& p = pages_[page];
      if (p == nullptr) p = std::make_unique<Page>();
      last_page_ = page;
      last_ = p.get();
    }
    Cell& c = last_->cells[(addr >> 2) & 1023];
    if (c.gen != gen_) {
      c = Cell{};
      c.gen = gen_;
    }
    return c;
  }

  void forget() {
    if (++gen_ == 0 || pages_.size() > kMaxPages) {
      pages_.clear();
      gen_ = 1;
      last_page_ = ~uintptr_t{0};
    }
  }

 private:
  struct Page {
    Cell cells[1024];
  };
  static constexpr size_t kMaxPages = 16384;  // about 1.4 GiB of cells

  std::unordered_map<uintptr_t, std::unique_ptr<Page>> pages_;
  uintptr_t last_page_ = ~uintptr_t{0};
  Page* last_ = nullptr;
  uint32_t gen_ = 1;
};

struct Memory {  // global memory, or the current block's __shared__ arrays
  Pages words;
  Shadow<Cell> bytes;
  Shadow<AtomicCell> atomic;
  void forget() {
    words.forget();
    bytes.forget();
    atomic.forget();
  }
};

struct State {
  const char* kernel = "";
  bool in_launch = false;
  Memory global, shared;
  std::vector<std::pair<uintptr_t, uintptr_t>> shared_arrays;  // every one met so far
  uintptr_t shared_lo = ~uintptr_t{0}, shared_hi = 0;
  std::set<std::pair<uint32_t, uint32_t>> reported;  // report mode: pairs of places
  size_t reports = 0;
};

State g;

// "file:line" of a place in the kernels (addr2line reads the line tables a race-check build
// compiles them with; the first frame of its inlining chain outside the emulator's headers, so
// an atomicAdd names its caller), or "module+offset".
std::string place(const void* pc) {
  static std::map<const void*, std::string> known;
  if (const auto it = known.find(pc); it != known.end()) return it->second;
  Dl_info info{};
  char offset[32] = "";
  std::string out;
  if (pc != nullptr && dladdr(pc, &info) != 0 && info.dli_fname != nullptr) {
    std::snprintf(offset, sizeof offset, "0x%zx",
                  static_cast<size_t>(static_cast<const char*>(pc) - 1 -
                                      static_cast<const char*>(info.dli_fbase)));
    const std::string command =
        std::string("addr2line -i -e '") + info.dli_fname + "' " + offset + " 2>/dev/null";
    if (FILE* pipe = popen(command.c_str(), "r")) {
      char line[1024];
      while (std::fgets(line, sizeof line, pipe) != nullptr) {
        std::string l(line, std::strcspn(line, " \n"));  // drops " (discriminator N)"
        if (!out.empty() || l.compare(0, 2, "??") == 0) continue;
        if (l.find("/emu/include/") == std::string::npos) out = l;
      }
      pclose(pipe);
    }
    if (out.empty()) {
      const char* file = std::strrchr(info.dli_fname, '/');
      out = std::string(file != nullptr ? file + 1 : info.dli_fname) + "+" + offset;
    }
  } else {
    std::snprintf(offset, sizeof offset, "%p", pc);
    out = offset;
  }
  return known.emplace(pc, out).first->second;
}

void report(const Access& a, const Set& earlier, Kind earlier_kind, uintptr_t addr, bool shared) {
  const Member& b = earlier.against(a);
  if (mode() == Mode::Report &&
      !g.reported.emplace(std::min(a.pc, b.pc), std::max(a.pc, b.pc)).second)
    return;
  const void* a_pc = g_pcs[a.pc];
  const void* b_pc = g_pcs[b.pc];
  char msg[2048];
  std::snprintf(
      msg, sizeof msg,
      "kernel %s: data race on %s memory at %p: thread %u of block %u %s it at %s, and thread "
      "%u of block %u %s it at %s, with nothing ordering the two (%s)",
      g.kernel, shared ? "__shared__" : "global", reinterpret_cast<const void*>(addr), a.thread,
      a.block, verb(a.kind), place(a_pc).c_str(), b.thread, b.block, verb(earlier_kind),
      place(b_pc).c_str(),
      b.block != a.block ? "different blocks of one launch are never ordered"
                         : "no __syncthreads between them, nor a __syncwarp in one warp");
  if (mode() == Mode::Fatal) fatal("%s", msg);
  ++g.reports;
  std::fprintf(stderr, "lockstep emulator: race check: %s\n", msg);
}

void check(Memory& m, Cell& c, uintptr_t key, const Access& a, uintptr_t addr, bool shared) {
  auto against = [&](const Set& s, Kind k) {
    if (!s.before(a)) report(a, s, k, addr, shared);
  };
  AtomicCell* atomic = nullptr;  // (c stays valid: the tables are separate)
  if (c.atomic) {
    atomic = &m.atomic.at(key);
  } else if (a.kind == AtomicRead || a.kind == AtomicWrite) {
    atomic = &m.atomic.at(key);
    *atomic = AtomicCell{};
    c.atomic = true;
  }
  switch (a.kind) {
    case Read:
      against(c.writes, Write);
      if (atomic != nullptr) against(atomic->writes, AtomicWrite);
      c.reads.add(a);
      break;
    case AtomicRead:
      against(c.writes, Write);
      atomic->reads.add(a);
      break;
    case AtomicWrite:
      against(c.writes, Write);
      against(c.reads, Read);
      atomic->writes.add(a);
      break;
    case Write:
      against(c.writes, Write);
      against(c.reads, Read);
      if (atomic != nullptr) {
        against(atomic->writes, AtomicWrite);
        against(atomic->reads, AtomicRead);
      }
      c.atomic = false;  // all of them happen before this write (or were reported)
      c.reads = Set{};
      c.writes = Set{};
      c.writes.add(a);
      break;
  }
}

bool is_shared(uintptr_t p) {
  if (p < g.shared_lo || p >= g.shared_hi) return false;
  for (const auto& [lo, hi] : g.shared_arrays)
    if (p >= lo && p < hi) return true;
  return false;
}

template <class T>
bool within(uintptr_t p, const T& object) {
  const auto lo = reinterpret_cast<uintptr_t>(&object);
  return p >= lo && p < lo + sizeof(T);
}

// An access of n bytes a kernel thread makes through a pointer to an n-byte type.
void require_aligned(const void* p, size_t n, const void* pc) {
  if (g_running_thread == nullptr || (reinterpret_cast<uintptr_t>(p) & (n - 1)) == 0) return;
  fatal(
      "kernel %s: a %zu-byte access at %p, which is not aligned to %zu bytes, at %s: a GPU "
      "fails it with cudaErrorMisalignedAddress",
      g.kernel, n, p, n, place(pc).c_str());
}

// rmw: an atomic read-modify-write (kind AtomicWrite), for the profile.
void on_access(const void* p, size_t n, Kind kind, const void* pc, bool rmw = false) {
  const KernelThread* t = g_running_thread;
  if (t == nullptr || (!g.in_launch && !g_profiling) || n == 0) return;
  auto addr = reinterpret_cast<uintptr_t>(p);
  if (addr >= reinterpret_cast<uintptr_t>(t->stack_begin) &&
      addr < reinterpret_cast<uintptr_t>(t->stack_end))
    return;  // the thread's locals
  if (within(addr, g_thread_idx) || within(addr, g_block_idx) || within(addr, g_block_dim) ||
      within(addr, g_grid_dim))
    return;  // threadIdx & co.: the scheduler's, read-only to kernels
  if (addr >= g_params_lo && addr < g_params_hi) return;  // the launch's arguments
  const bool shared = is_shared(addr);
  if (g_profiling) {
    const char what = rmw ? 'a' : kind == Read || kind == AtomicRead ? 'r' : 'w';
    profile_access(*t, addr, n, what, pc, shared);
  }
  if (!g.in_launch) return;
  const Access a{t->block,
                 t->thread,
                 static_cast<uint16_t>(t->thread / 32),
                 static_cast<uint32_t>(*t->block_phase),
                 static_cast<uint32_t>(*t->warp_phase),
                 pc_id(pc),
                 kind};
  Memory& m = shared ? g.shared : g.global;
  const uintptr_t end = addr + n;
  while (addr < end) {
    if ((addr & 3) == 0 && end - addr >= 4) {
      check(m, m.words.at(addr), addr << 1, a, addr, shared);
      addr += 4;
    } else {
      check(m, m.bytes.at(addr << 1 | 1), addr << 1 | 1, a, addr, shared);
      addr += 1;
    }
  }
}

}  // namespace

std::string code_place(const void* pc) { return place(pc); }

void race_launch_begin(const char* kernel) {
  g.in_launch = mode() != Mode::Off;
  g.kernel = kernel;
}

void race_launch_end() {
  g.in_launch = false;
  g.global.forget();
  g.shared.forget();
}

void race_block_begin() {
  if (g.in_launch) g.shared.forget();
}

void race_shared(const void* p, size_t bytes) {
  const auto lo = reinterpret_cast<uintptr_t>(p), hi = lo + bytes;
  for (const auto& r : g.shared_arrays)
    if (r.first == lo) return;
  g.shared_arrays.emplace_back(lo, hi);
  g.shared_lo = std::min(g.shared_lo, lo);
  g.shared_hi = std::max(g.shared_hi, hi);
}

void race_atomic(const void* p, size_t bytes, const void* pc) {
  on_access(p, bytes, AtomicWrite, pc, /*rmw=*/true);
}

const char* set_racecheck(const char* m) {
  const char* previous = mode_name(mode());
  g_mode = parse_mode(m != nullptr ? m : std::getenv("LOCKSTEP_EMU_RACECHECK"));
  g_mode_set = true;
  return previous;
}

size_t take_race_reports() {
  const size_t n = g.reports;
  g.reports = 0;
  g.reported.clear();
  return n;
}

}  // namespace lockstep_emu

#if defined(LOCKSTEP_EMU_RACECHECK)
// GCC's ThreadSanitizer instrumentation of the translated kernels (see the top of the file):
// these replace its runtime, which a race-check build does not link.
// The plain variants are the accesses the compiler knows naturally aligned (an int64_t
// through an int64_t*): one that is not would fail on a GPU (cudaErrorMisalignedAddress).
#define LOCKSTEP_EMU_HOOK(name, kind, n, aligned)                                   \
  extern "C" void __tsan_##name(void* p) {                                          \
    if (aligned) lockstep_emu::require_aligned(p, n, __builtin_return_address(0));  \
    lockstep_emu::on_access(p, n, lockstep_emu::kind, __builtin_return_address(0)); \
  }
#define LOCKSTEP_EMU_HOOKS(n)                                         \
  LOCKSTEP_EMU_HOOK(read##n, Read, n, true)                           \
  LOCKSTEP_EMU_HOOK(write##n, Write, n, true)                         \
  LOCKSTEP_EMU_HOOK(unaligned_read##n, Read, n, false)                \
  LOCKSTEP_EMU_HOOK(unaligned_write##n, Write, n, false)              \
  LOCKSTEP_EMU_HOOK(volatile_read##n, AtomicRead, n, true)            \
  LOCKSTEP_EMU_HOOK(volatile_write##n, AtomicWrite, n, true)          \
  LOCKSTEP_EMU_HOOK(unaligned_volatile_read##n, AtomicRead, n, false) \
  LOCKSTEP_EMU_HOOK(unaligned_volatile_write##n, AtomicWrite, n, false)
LOCKSTEP_EMU_HOOKS(1)
LOCKSTEP_EMU_HOOKS(2)
LOCKSTEP_EMU_HOOKS(4)
LOCKSTEP_EMU_HOOKS(8)
LOCKSTEP_EMU_HOOKS(16)
extern "C" void __tsan_read_range(void* p, unsigned long n) {
  lockstep_emu::on_access(p, n, lockstep_emu::Read, __builtin_return_address(0));
}
extern "C" void __tsan_write_range(void* p, unsigned long n) {
  lockstep_emu::on_access(p, n, lockstep_emu::Write, __builtin_return_address(0));
}
extern "C" void __tsan_init() {}
extern "C" void __tsan_atomic_signal_fence(int) {}  // __threadfence: the fibers' compiler barrier
extern "C" void __tsan_atomic_thread_fence(int) {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_vptr_read(void**) {}
#endif
