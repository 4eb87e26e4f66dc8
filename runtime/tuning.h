// Settings that tune code generation and execution without changing any result's meaning:
// the target CPU, GEMM and attention blocking, buffer poisoning, profiling hooks. The
// application's entry point fills one RtTuning (from its flags and the environment) and
// passes it down through options; library code never reads the environment.
// A zero RtTuning is every default.
#ifndef KILN_TUNING_H
#define KILN_TUNING_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/diag.h"

typedef struct RtTuning {
  const char *cpu, *features;  // target CPU and features; NULL: the host's
  int vector_floats;           // f32 lanes of a named cpu without features (its probe); 0: none
  int threads;                 // 0: every core
  // GEMM plan overrides (0: the plan's own choice).
  int gemm_mr, gemm_nv, gemm_unroll;
  int64_t gemm_kc, gemm_l2_floats, gemm_min_items;
  bool gemm_no_fuse;           // never pack B inside the work items (attention)
  bool gemm_no_prefetch;       // no prefetch of the next B slice
  int gemm_pf_locality;        // llvm.prefetch locality + 1 (1..4); 0: the plan's (2, L2)
  bool gemm_debug;             // print each GEMM's plan on stderr
  int attn_rows;               // query rows per attention work item (0: the default)
  bool poison_buffers;         // fill fresh buffers with NaN bytes (tests)
  bool perf_jit;               // register LLVM's perf listener (jitdump)
} RtTuning;

// Where an entry point's settings come from: a variable's value by name, or NULL when it is
// not set (the C library's environment lookup has this type). The kiln command and compiled
// executables pass the environment's (their entry points are the only places that touch
// it); tests and benchmarks may pass their own.
typedef char *(*RtLookup)(const char *name);

// Fills t from the variables below, as looked up; unset, empty or malformed ones leave
// their field as it was (docs/architecture.md, "Settings and the environment"):
//   KILN_CPU, KILN_CPU_FEATURES  cpu, features ("native" as KILN_CPU: the host's)
//   KILN_NUM_THREADS             threads (1..1024)
//   KILN_GEMM_MR, _NV, _UNROLL, _KC, _L2, _MIN_ITEMS  gemm_mr .. gemm_min_items
//   KILN_GEMM_FUSE=0, KILN_GEMM_PREFETCH=0            gemm_no_fuse, gemm_no_prefetch
//   KILN_GEMM_PF_LOCALITY (0..3)  gemm_pf_locality   KILN_GEMM_DEBUG  gemm_debug
//   KILN_ATTN_ROWS               attn_rows
//   KILN_POISON_BUFFERS=1        poison_buffers     KILN_PERF_JIT (not 0)  perf_jit
void rt_tuning_read(RtTuning *t, RtLookup lookup);

// The machine's physical memory in bytes (sysconf), or 0 if unknown.
uint64_t rt_physical_memory(void);

// A size as --max-memory takes it: a whole number of bytes, or with K, M, G or T (1024 to
// the 1st to 4th power); 0 and values past 2^64 are refused.
bool rt_parse_size(const char *s, uint64_t *out);

// Whether `bytes` of memory that `what` ("the program") would allocate are within
// max_memory (the --max-memory setting; 0: the machine's physical memory); if not, a
// message naming both and the setting that raises the limit.
bool rt_memory_fits(uint64_t bytes, uint64_t max_memory, const char *what, Diag *d);

#endif
