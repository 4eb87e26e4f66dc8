// Settings that tune code generation and execution without changing any result's meaning:
// the target CPU, GEMM and attention blocking, buffer poisoning, profiling hooks. The
// application's entry point fills one RtTuning (from its flags and the environment) and
// passes it down through options; library code never reads the environment.
#ifndef KILN_TUNING_H
#define KILN_TUNING_H

#include <stdbool.h>
#include <stdint.h>

typedef struct RtTuning {
  const char *cpu, *features;  // target CPU and features; NULL: the host's
  int threads;                 // 0: every core
  // GEMM plan overrides (0: the plan's own choice).
  int gemm_mr, gemm_nv, gemm_unroll;
  int64_t gemm_kc, gemm_l2_floats, gemm_min_items;
  int gemm_fuse, gemm_prefetch, gemm_pf_locality;  // -1: the plan's choice; else 0/1 (locality 0..3)
  bool gemm_debug;             // print each GEMM's plan on stderr
  int attn_rows;               // query rows per attention work item (0: the default)
  bool poison_buffers;         // fill fresh buffers with NaN bytes (tests)
  bool perf_jit;               // register LLVM's perf listener (jitdump)
} RtTuning;

#endif
