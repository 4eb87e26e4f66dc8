// Code generation state and helpers over the LLVM C API: one LLVM context and module per
// compilation, a builder, the host target machine, the kernel ABI, loops, vectors and
// intrinsics; and the JIT that optimises (new pass manager, CG_PASSES) and loads modules
// through ORC LLJIT. Kernels emitted by codegen/cg_*.c all use this.
//
// Kernel ABI: void kernel(void **bufs, int64_t begin, int64_t end) computes work items
// [begin, end) of its op; bufs are the plan's buffer pointers in the order the lowering
// chose. The runtime splits [0, work) across threads.
#ifndef KILN_CG_H
#define KILN_CG_H

#include <llvm-c/Core.h>
#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>
#include <stdbool.h>
#include <stdint.h>

#include "codegen/codegen.h"
#include "runtime/cache.h"
#include "runtime/diag.h"
#include "runtime/tuning.h"

typedef struct CgOptions {
  const char *cpu;       // NULL: tuning.cpu, else the host's (LLVMGetHostCPUName)
  const char *features;  // NULL: tuning.features, else the host's (LLVMGetHostCPUFeatures)
  int vector_floats;     // 0: from the features (16 with AVX-512, 8 with AVX2, else 4)
  const char *dump_dir;  // when set, the optimised IR of the module is written there
  bool training;         // dropout draws its mask from the plan's seed; false: the identity
  bool pack_each_run;    // weights change between runs (training): a GEMM packs a parameter
                         // operand in the run, into scratch that dies with the GEMM, instead
                         // of once after binding into a buffer pinned across runs
  bool no_memplan;       // one allocation per buffer instead of the planned arena (to compare)
  uint64_t max_memory;   // refuse a program whose buffers need more bytes (0: physical memory)
  RtTuning tuning;       // the entry point's settings: target CPU, GEMM and attention
                         // blocking, perf listener, buffer poisoning (runtime/tuning.h)
  RtCacheOptions cache;  // the compile cache of kernel objects (dir NULL: none; docs/cache.md)
} CgOptions;

typedef struct Cg {
  LLVMOrcThreadSafeContextRef tsc;  // owns ctx
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTargetMachineRef tm;
  char *triple, *cpu, *features;
  const char *name, *dump_dir;
  int W;  // f32 lanes of one vector register
  bool training;  // CgOptions.training
  bool pack_each_run;  // CgOptions.pack_each_run
  RtTuning tuning;  // CgOptions.tuning (cpu and features resolved into cpu, features above)
  RtCacheOptions cache;  // CgOptions.cache
  bool quick;  // kernels begun now are optimised with CG_PASSES_QUICK (cg_kernel_begin)
  // By node id, while cg_lower_program runs (inference only, else NULL): a bf16 GEMM reads
  // the node as its plain A, so a GEMM computing it also writes its bf16 words
  // (CgGemm.words_out).
  const bool *bf16_a;
  LLVMTypeRef void_t, f32, f64, i1, i8, i32, i64, ptr;
  LLVMTypeRef vf;         // <W x float>
  LLVMTypeRef kernel_ty;  // void (ptr, i64, i64)
  // The kernel being emitted.
  LLVMValueRef fn, bufs, begin, end;
} Cg;

bool cg_init(Cg *cg, const char *module_name, const CgOptions *opt, Diag *d);
void cg_dispose(Cg *cg);  // frees everything not handed to a JIT

// ---- kernels --------------------------------------------------------------------------
void cg_kernel_begin(Cg *cg, const char *name);  // new function; builder at its entry
                                                 // (marked CG_QUICK_ATTR when cg->quick)
void cg_kernel_end(Cg *cg);                      // ret void
LLVMValueRef cg_buf(Cg *cg, int i);              // bufs[i] as ptr
// A new basic block in the current kernel.
LLVMBasicBlockRef cg_block(Cg *cg, const char *name);

// ---- loops: for (iv = lo; iv < hi; iv += step) ----------------------------------------
typedef struct CgLoop {
  LLVMValueRef iv, step;
  LLVMBasicBlockRef head, exit;
} CgLoop;
void cg_for_begin(Cg *cg, CgLoop *l, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef step,
                  const char *name);
void cg_for_end(Cg *cg, CgLoop *l);

// ---- values ---------------------------------------------------------------------------
LLVMValueRef cg_i64(Cg *cg, int64_t v);
LLVMValueRef cg_i32(Cg *cg, int32_t v);
LLVMValueRef cg_f32(Cg *cg, double v);
LLVMTypeRef cg_vec_t(Cg *cg, LLVMTypeRef elem, int lanes);
LLVMValueRef cg_splat(Cg *cg, LLVMValueRef scalar, int lanes);  // lanes 1: the scalar
// A constant of x's type (scalar or vector) with every lane v.
LLVMValueRef cg_const_like(Cg *cg, LLVMValueRef x, double v);
LLVMValueRef cg_const_int_like(Cg *cg, LLVMValueRef x, int64_t v);  // integer type of x's shape
// Calls an overloaded intrinsic ("llvm.fma", "llvm.maxnum", ...) on type `overload`.
LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef overload, LLVMValueRef *args,
                          int n);
LLVMValueRef cg_fma(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);  // a*b+c, one rounding
// Address of element idx (i64) of type elem at base.
LLVMValueRef cg_gep(Cg *cg, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef idx);
// Loads/stores `lanes` contiguous elements (alignment of the element only); with
// lanes < full width for tails a masked load/store of a full vector is used by callers
// that want it; these plain forms accept any lane count (1 = scalar).
LLVMValueRef cg_load(Cg *cg, LLVMTypeRef elem, LLVMValueRef ptr, int lanes);
void cg_store(Cg *cg, LLVMValueRef v, LLVMValueRef ptr);
// Horizontal reductions of a float vector (llvm.vector.reduce.*).
LLVMValueRef cg_reduce_add(Cg *cg, LLVMValueRef v);  // ordered from 0.0: deterministic
LLVMValueRef cg_reduce_max(Cg *cg, LLVMValueRef v);
// The largest lane of v, which has no NaN (the caller's guarantee) and whose zeros' sign
// does not matter: a shuffle tree of vmaxps (cg_reduce_max's NaN and -0 < +0 order cost
// ~40 instructions a 16-lane vector on x86).
LLVMValueRef cg_reduce_max_nonan(Cg *cg, LLVMValueRef v);

// ---- vector math (codegen/cg_math.c): any float scalar or vector type ------------------
LLVMValueRef cg_exp(Cg *cg, LLVMValueRef x);
// exp's pieces, for kernels with exps of their own (lower_attention.c's softmax): log2 e,
// ln 2 in two parts (hi: 16 significant bits, so n hi is exact), and the minimax
// polynomial P(r) = (e^r - 1 - r) / r^2 on [-ln2/2, ln2/2] (relative error of e^r 2^-31.2).
#define CG_LOG2E 0x1.715476p+0
#define CG_LN2_HI 0x1.62e4p-1
#define CG_LN2_LO 0x1.7f7d1cp-20
enum { CG_EXP_POLY_N = 6 };
extern const float cg_exp_poly[CG_EXP_POLY_N];
LLVMValueRef cg_log(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_erf(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_tanh(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_gelu(Cg *cg, LLVMValueRef x);     // exact: 0.5 x (1 + erf(x / sqrt 2))
// cg_gelu's result where every lane has |x| < CG_GELU_CENTRAL (or is NaN), at a third of
// its cost: callers may branch to it on cg_gelu_all_central (the GEMM epilogue does).
#define CG_GELU_CENTRAL 1.25
LLVMValueRef cg_gelu_central(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_gelu_all_central(Cg *cg, LLVMValueRef x);  // i1: every lane takes that form
LLVMValueRef cg_gelu_grad(Cg *cg, LLVMValueRef x);  // gelu'(x) = Phi(x) + x phi(x)
LLVMValueRef cg_sigmoid(Cg *cg, LLVMValueRef x);

// ---- JIT ------------------------------------------------------------------------------
// The optimisation pipeline of every kernel (JIT objects, AOT, the cache's recipe). O2, not
// O3: on kiln's explicitly vectorised kernels O3 only unrolls the packing, gather and slice
// loops further and unswitches a few GEMMs' tile loops, for ~10% more compile CPU; the GEMM
// microkernels and attention come out the same (docs/benchmarks.md, issue 13).
#define CG_PASSES "default<O2>"
// ... and of the kernels that lose nothing at O1, which objects.c compiles with this one:
// the GEMMs' compute and packing kernels (explicit microkernels: the same speed at O1 for
// ~40% less optimisation time) and pure data movement. attention_grad is 23% slower at O1,
// element-wise loops 7% (issue 13, docs/benchmarks.md). The kernels carry the string
// attribute CG_QUICK_ATTR; AOT and --dump-llvm optimise the whole module with CG_PASSES
// (no fast-math flags anywhere: the level changes no result).
#define CG_PASSES_QUICK "default<O1>"
#define CG_QUICK_ATTR "kiln-quick"
typedef struct CgJit CgJit;
bool cg_verify(Cg *cg, Diag *d);  // LLVMVerifyModule: a failure is an internal error
// Verifies the module (LLVMVerifyModule), optimises it (CG_PASSES on cg's target
// machine) and writes it to dump_dir if set: the whole module at once (AOT
// objects; the JIT when dumping).
bool cg_optimise(Cg *cg, Diag *d);
// Optimises and compiles the module's kernels on the tuning's threads (every core when 0;
// cg_emit_objects, through cg->cache) and loads the objects into a new LLJIT; with a
// dump_dir, cg_optimise and one object. cg is disposed either way.
bool cg_jit(Cg *cg, CgJit **out, Diag *d);
void *cg_jit_lookup(CgJit *j, const char *name);
// The kernel groups cg_jit took from the cache and compiled (0, 0 without a cache).
void cg_jit_cache_counts(const CgJit *j, int *hits, int *misses);
void cg_jit_free(CgJit *j);

// ---- objects (codegen/objects.c) and the compile cache's keys (codegen/cache.c) ---------
typedef struct CgObjects {
  LLVMMemoryBufferRef *v;  // the objects
  int n;
  int hits, misses;        // kernel groups from the cache and compiled (with a cache)
} CgObjects;
// Verifies the module and compiles it to objects on `threads` threads; with cache->dir,
// one object per kernel group, read from the cache when there and stored when compiled.
// The module is left as it was. Free out with cg_objects_free (unless handed on).
bool cg_emit_objects(Cg *cg, int threads, const RtCacheOptions *cache, CgObjects *out, Diag *d);
void cg_objects_free(CgObjects *o);
// key[g]: the cache key of the functions fn[i] with group[i] == g (g < n_groups), a hash
// of their IR and of cg's target, tuning and versions. False when the module's text
// cannot be split into its functions (then nothing should be cached).
bool cg_cache_keys(Cg *cg, LLVMValueRef *fn, const int *group, int n, int n_groups,
                   char (*key)[RT_CACHE_KEY_CHARS + 1]);

#endif
