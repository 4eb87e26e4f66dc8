// Lowering: IR nodes to kernels (LLVM functions in a Cg module) and to the steps of a
// runtime plan. A lowering emits one or more kernels and appends one step per kernel
// call; each step names its buffers (IR node values, scratch buffers, the status word) in
// the order the kernel reads them from `bufs`.
#ifndef KILN_LOWER_H
#define KILN_LOWER_H

#include "codegen/cg.h"
#include "ir/ir.h"
#include "runtime/program.h"

#define CG_MAX_ARGS 16

typedef enum {
  CG_ARG_NODE,     // the value of IR node `id` (native dtype, row-major, contiguous)
  CG_ARG_SCRATCH,  // scratch buffer `id` of `bytes` bytes, shared by steps that name the id
  CG_ARG_STATUS,   // the plan's status word: int64_t[4] {error code, node id, value, index}
  CG_ARG_SEED,     // the plan's seed: uint64_t[1], set by the caller before each run
  CG_ARG_STREAMS,  // the step's dropout streams: CgStep.streams (uint64_t[n_streams])
} CgArgKind;

typedef struct CgArg {
  CgArgKind kind;
  int id;
  size_t bytes;  // SCRATCH only
} CgArg;

// Dropout streams a kernel draws masks from. Their name hashes are data of the step, not
// constants of the kernel, so equal layers share one kernel (a body with more streams
// than this bakes them in instead).
#define CG_MAX_STREAMS 4

typedef struct CgStep {
  char fn[96];    // kernel symbol in the module
  int64_t work;   // work items; the runtime calls fn(bufs, begin, end) over [0, work)
  int n_args;
  CgArg args[CG_MAX_ARGS];
  bool once;      // reads only parameters (e.g. packing weights): run once after binding
  int node;       // the IR node the step belongs to
  int n_streams;  // CG_ARG_STREAMS: the name hashes of the masks, in the kernel's order
  uint64_t streams[CG_MAX_STREAMS];
} CgStep;

typedef struct CgWords {
  int node;
  CgArg copy;  // the node's value as rows of words of two bf16 (a producer's CgGemm.words_out)
} CgWords;

typedef struct CgSteps {
  CgStep *v;
  int n, cap;
  int n_scratch;  // scratch ids handed out so far
  CgWords *words;  // bf16 copies written by the steps so far
  int n_words;
} CgSteps;

CgStep *cg_steps_add(CgSteps *s, const char *fn, int64_t work, int node);
void cg_steps_free(CgSteps *s);
// A step of node n whose kernel takes (n, n's inputs in order[, the status word]): the
// buffer table of most one-node kernels.
CgStep *cg_steps_add_node(CgSteps *s, const char *fn, int64_t work, const IrNode *n, bool status);
int cg_steps_new_scratch(CgSteps *s);
// The bf16 word copy of node `node` that a step already writes (NULL: none).
const CgArg *cg_steps_words_of(const CgSteps *s, int node);
// Step st also writes node's value ([rows, cols], cols even) as rows of cols / 2 words of two
// bf16: a new scratch copy, appended to st's buffers and recorded for cg_steps_words_of.
void cg_steps_add_words(CgSteps *s, CgStep *st, int node, int64_t rows, int64_t cols);
// Appends the step's stream table (CG_ARG_STREAMS) holding one dropout stream.
void cg_steps_add_stream(CgStep *st, uint64_t stream);
static inline CgArg cg_arg_node(int id) { return (CgArg){CG_ARG_NODE, id, 0}; }
static inline CgArg cg_arg_scratch(int id, size_t bytes) { return (CgArg){CG_ARG_SCRATCH, id, bytes}; }
static inline CgArg cg_arg_status(void) { return (CgArg){CG_ARG_STATUS, 0, 0}; }
static inline CgArg cg_arg_seed(void) { return (CgArg){CG_ARG_SEED, 0, 0}; }

// Status codes kernels write into the status word (first error wins): the runtime's
// (runtime/program.h RT_STATUS_*, whose rt_program_status words them).
enum {
  CG_STATUS_OK = RT_STATUS_OK,
  CG_STATUS_INDEX_RANGE = RT_STATUS_INDEX_RANGE,
  CG_STATUS_LABEL_RANGE = RT_STATUS_LABEL_RANGE,
  CG_STATUS_CAST_RANGE = RT_STATUS_CAST_RANGE,
  CG_STATUS_INT_OVERFLOW = RT_STATUS_INT_OVERFLOW,
  CG_STATUS_TARGET_RANGE = RT_STATUS_TARGET_RANGE,
};

// ---------------------------------------------------------------------------------------
// GEMM (codegen/cg_gemm.c): C[b] = epilogue(A[b] · B[b]) for every batch index b, with
// static sizes and element strides. Batch index b runs over dims bdim[0..nbatch) (row-major)
// and each operand's offset is the sum over batch dims of index * stride (0 = broadcast).
typedef enum { CG_ACT_NONE, CG_ACT_GELU } CgAct;

typedef struct CgGemm {
  int64_t M, N, K;
  int nbatch;
  int64_t bdim[IR_MAX_RANK];
  int64_t a_bstride[IR_MAX_RANK], b_bstride[IR_MAX_RANK], c_bstride[IR_MAX_RANK];
  int64_t a_rs, a_cs;  // A(i, k) at i*a_rs + k*a_cs (transposes are strides)
  int64_t b_rs, b_cs;  // B(k, j) at k*b_rs + j*b_cs
  int64_t c_rs;        // C(i, j) at i*c_rs + j (C rows contiguous)
  // Epilogue on the register tile before the store, in this order:
  //   t = scale * acc; t += bias[j]; t = act(t); t += R(i, j) (R laid out like C)
  float scale;
  bool has_bias, has_residual;
  CgAct act;
  bool b_constant;     // B is a parameter: its packing may run once (CgStep.once)
  bool bf16;           // operands rounded to bf16, f32 sums (codegen/cg_gemm_bf16.c)
  bool int8;           // A per row, B per column quantised to int8, int32 sums (cg_gemm_int8.c)
  // Inference: C (node `node`, 2-D, N even) is also written as rows of N / 2 words of two
  // bf16 into a scratch copy, which a bf16 GEMM reading C as its A takes instead of packing
  // it in a step of its own (cg_steps_words_of). Each tile is converted after its last K
  // block, while it is in L1, by the thread that computed it.
  bool words_out;
} CgGemm;

// Emits the kernels of one GEMM named `name` (a prefix for its symbols) and appends its
// steps. a, b, c, bias and residual are the buffers (bias/residual ignored unless enabled).
bool cg_lower_gemm(Cg *cg, const CgGemm *g, const char *name, CgArg a, CgArg b, CgArg c,
                   CgArg bias, CgArg residual, int node, CgSteps *steps, Diag *d);

// The packing of A for a GEMM over words (bf16, int8): *w = g over kwords words of K, A read
// from a scratch copy of M rows of row_words words per batch item (w->a_rs = row_words),
// written by a step (work item = `rows` rows of a batch item, fewer at its M tail; bufs A,
// copy) whose loop body `emit` emits: the n rows from src = &A(i, 0) (g's strides) into
// dst (row i's row_words words, the next rows after it); *a = the copy.
typedef void (*CgPackA)(Cg *cg, const CgGemm *g, LLVMValueRef src, LLVMValueRef dst, int n);
// With `ready` (a copy in that layout another step writes) no step is added: *a = *ready.
void cg_gemm_pack_a_step(Cg *cg, const CgGemm *g, const char *name, int64_t kwords,
                         int64_t row_words, int rows, CgPackA emit, CgArg *a, int node,
                         CgSteps *steps, CgGemm *w, const CgArg *ready);
// cg_gemm.c's IR helpers for the packings: the in-register transpose of W vectors of W
// lanes (any element type; the f32 transposed panels' too), and `lanes` contiguous floats
// at ptr as a <W x float>, zero past them (a masked load).
void cg_gemm_transpose(Cg *cg, LLVMValueRef *v);
LLVMValueRef cg_gemm_load_lanes(Cg *cg, LLVMValueRef ptr, int lanes);

// The bf16 GEMM's pieces (codegen/cg_gemm_bf16.c), which cg_lower_gemm uses when g->bf16.
// Appends the step that packs A (*a) into words of two bf16 and makes *a that packed copy;
// *w is the GEMM cg_gemm.c then runs: g over K2 = ceil(K / 2) words, A read from the copy.
bool cg_gemm_bf16_pack_a(Cg *cg, const CgGemm *g, const char *name, CgArg *a, int node,
                         CgSteps *steps, CgGemm *w);
// Words [0, ceil(n / 2)) from the n contiguous floats at src into dst: word k2 =
// bf16(src[2 k2]) | bf16(src[2 k2 + 1]) << 16 (0 past n). A's packing and words_out's.
void cg_gemm_bf16_row_words(Cg *cg, LLVMValueRef src, LLVMValueRef dst, int64_t n);
// Packs one panel of w's B (src: its first column, k = 0) into K2 × nr words, zero past
// k_elems (the original K) and past `cols` columns.
void cg_gemm_bf16_pack_panel(Cg *cg, const CgGemm *w, int64_t k_elems, int nr, LLVMValueRef src,
                             LLVMValueRef dst, int cols);
// One k2 step: b[] from a <L x i32> of panel words (once per step), then per accumulator
// (<L x float>, or a float for L = 1) acc + a·b over the word pair (vdpbf16ps at L = W =
// 16 with AVX512_BF16, else its f32 FMA equivalent: the same bits). The attention kernel
// (lower_attention.c) uses them too.
void cg_gemm_bf16_prepare_b(Cg *cg, LLVMValueRef words, LLVMValueRef b[2]);
LLVMValueRef cg_gemm_bf16_dot(Cg *cg, LLVMValueRef acc, LLVMValueRef aword, const LLVMValueRef b[2]);
// Words of two bf16 (i32 lanes, or an i32): lo and hi (f32 values or vectors) rounded to
// nearest even, lo in bits 0..15, hi in bits 16..31.
LLVMValueRef cg_bf16_words(Cg *cg, LLVMValueRef lo, LLVMValueRef hi);
// The words of the lanes of the L-lane f32 vector x (L even), followed by those of y (L
// lanes, or NULL): word t = (z[2 t], z[2 t + 1]) of z = x y, as cg_gemm_bf16_row_words
// makes them from memory.
LLVMValueRef cg_bf16_lane_words(Cg *cg, LLVMValueRef x, LLVMValueRef y);

// The int8 GEMM's pieces (codegen/cg_gemm_int8.c), which cg_lower_gemm uses when g->int8.
// Appends the step that quantises A (*a) into rows of K4 = ceil(K / 4) words of four u8
// (q + 128) followed by the row's f32 scale, and makes *a that copy; *w is g over K4 words.
bool cg_gemm_int8_pack_a(Cg *cg, const CgGemm *g, const char *name, CgArg *a, int node,
                         CgSteps *steps, CgGemm *w);
// Packs one panel of w's B (src: its first column) into K4 × nr words of four s8, then a
// row of nr i32 compensations (128 · sum_k q) and a row of nr f32 scales; zero past k_elems
// and past `cols` columns.
void cg_gemm_int8_pack_panel(Cg *cg, const CgGemm *w, int64_t k_elems, int nr, LLVMValueRef src,
                             LLVMValueRef dst, int cols);
// One k4 step: b[] from a <W x i32> of panel words, then acc (i32 lanes in a <W x float>)
// + the four u8·s8 products of aword and each lane (vpdpbusd, or exact i32 arithmetic).
void cg_gemm_int8_prepare_b(Cg *cg, LLVMValueRef words, LLVMValueRef b[4]);
LLVMValueRef cg_gemm_int8_dot(Cg *cg, LLVMValueRef acc, LLVMValueRef aword, const LLVMValueRef b[4]);
// The f32 value of an accumulator vector: ((float)(acc - comp) · scale_a) · scale_b.
LLVMValueRef cg_gemm_int8_dequant(Cg *cg, LLVMValueRef acc, LLVMValueRef comp, LLVMValueRef scale_a,
                                  LLVMValueRef scale_b);

// ---------------------------------------------------------------------------------------
// The lowerings the table in codegen/lowerings.c points to, by file.
#define CG_LOWERINGS(X)                                                   \
  X(elementwise) X(source)                   /* lower_ew.c */             \
  X(matmul)                                  /* lower_matmul.c */         \
  X(copy) X(permute) X(concat) X(slice) X(gather) /* lower_data.c */     \
  X(reduce) X(softmax) X(layernorm)          /* lower_reduce.c */         \
  X(cross_entropy) X(kl_div)                 /* lower_loss.c */         \
  X(fused)                                   /* lower_fused.c */        \
  X(attention) X(attention_grad)             /* lower_attention.c */    \
  X(scatter_add)                             /* lower_scatter.c */
#define X(k) bool cg_lower_##k(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d);
CG_LOWERINGS(X)
#undef X

#endif
