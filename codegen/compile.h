// Compiling a graph for the JIT: lower every needed node to kernels, optimise and load
// them, describe the program (cg_describe: codegen's output, an RtProgram, the same for
// `kiln compile`) and instantiate it with runtime/program.c: its arena, buffers and plan.
#ifndef KILN_COMPILE_H
#define KILN_COMPILE_H

#include "codegen/cg.h"
#include "ir/ir.h"
#include "codegen/lower.h"
#include "codegen/memory.h"
#include "runtime/plan.h"
#include "runtime/program.h"

typedef struct CgProgram {
  const IrGraph *g;
  CgJit *jit;
  RtProgram prog;   // codegen's output: the IR-free description, kernels from the JIT
  RtInstance inst;  // its arena, buffers and plan (runtime/program.h)
  RtPlan plan;      // inst.plan: every step in order
  void **value;     // per node: its buffer (native dtype), NULL when not computed (inst.buf)
  size_t *bytes;    // per node: buffer size
  int n_scratch;
  size_t *scratch_bytes;
  CgSteps steps;    // the symbolic plan: step k's kernel, work and buffer ids (plan.steps[k])
  int64_t *status;  // {code, node id, value, index}: kernels report data errors here
  uint64_t *seed;   // [2] the dropout stream's seed (training) and the run's share of the
                    // step's rows (cg_dropout_key): set before rt_plan_run; 0 at first
  int n_kernels;    // distinct kernels emitted
  int cache_hits, cache_misses;  // kernel groups from the compile cache and compiled (with one)
  double compile_ms;  // all of cg_compile: lowering, LLVM (O3, codegen, JIT), buffers
  double lower_ms, llvm_ms;
  // The memory plan: computed values and scratch buffers at offsets in one arena (unless
  // CgOptions.no_memplan); parameters and inputs have buffers of their own.
  size_t arena_bytes;      // 0 when not planned
  MemStats mem;            // arena, lower bound and unplanned bytes of the plan
} CgProgram;

// codegen's output: the RtProgram (runtime/program.h) of the lowered `steps` for the nodes
// `need`s, values `want` marks (all when NULL) kept to the end of the run. Buffers are
// placed in one arena by the memory plan when `planned`, else each of its own; kernels are
// named by symbol, their code left NULL (the JIT fills it in; `kiln compile` writes names).
// Outputs are the graph's outputs then losses. The description points into g and steps,
// which must outlive it; stats (may be NULL) receives the plan's numbers.
bool cg_describe(const IrGraph *g, const bool *need, const bool *want, const CgSteps *steps,
                 bool planned, RtProgram *out, MemStats *stats, Diag *d);
void cg_describe_free(RtProgram *p);

// The nodes `want` (all when NULL) needs: itself and everything upstream. Caller frees.
bool *cg_needed(const IrGraph *g, const bool *want);
// Lowers every needed node into cg's module and appends the plan's steps (no LLVM
// optimisation, no JIT): the part the JIT and AOT object emission share.
bool cg_lower_program(Cg *cg, const IrGraph *g, const bool *need, CgSteps *steps, Diag *d);

// The bytes a run keeps outside the arena (runtime/program.h): the parameters' buffers, of
// which those only once-steps read (held packed only after the first run) and the largest
// of them, and the inputs' buffers; and, inside the arena, the packed copies the once-steps
// write (pinned; 0 when weights are packed in every run, into scratch that dies with its GEMM).
typedef struct CgResident {
  uint64_t params, pack_only, largest_pack_only, inputs, packed;
} CgResident;

// Lowers what `want` needs (no LLVM optimisation, no JIT) and plans its buffers: the
// numbers `kiln check --memory` prints, and the number of plan steps; res (may be NULL)
// receives the bytes outside the arena.
bool cg_memory_stats(const IrGraph *g, const bool *want, const CgOptions *opt, MemStats *st, CgResident *res,
                     int *n_steps, Diag *d);

// Compiles the nodes needed for `want` (all when NULL).
bool cg_compile(const IrGraph *g, const bool *want, const CgOptions *opt, CgProgram *p, Diag *d);
// After rt_plan_run: rt_program_status of the program's status word.
bool cg_program_status(const CgProgram *p, Diag *d);
void cg_program_free(CgProgram *p);

// Lowering of one node (codegen/lower_*.c): emits its kernels (once per distinct
// signature) and appends its steps. The table is indexed by IrOpKind; sources have none.
typedef bool (*CgLowerFn)(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d);
extern const CgLowerFn cg_lowerings[IR_OP_COUNT];
// The ops whose kernels only move data: optimised with CG_PASSES_QUICK (codegen/cg.h).
extern const bool cg_quick_ops[IR_OP_COUNT];

// A kernel name unique to the node's op, dtypes, shapes and attributes: nodes that would
// get identical code share one kernel. Returns true if the kernel already exists.
bool cg_kernel_name(Cg *cg, const IrNode *n, const char *extra, char *buf, size_t size);
// A kernel named by what its code depends on rather than by a node: "<prefix>_<hash of the
// n values>" (a GEMM's weight packing, attention's K^T), shared by every node that needs
// the same one. Returns true if the kernel already exists.
bool cg_kernel_name_of(Cg *cg, const char *prefix, const int64_t *v, int n, char *buf, size_t size);

#endif
