// The operator IR: a graph whose nodes are tensors (ggml style: the tensor is the node).
// Every node has one op, static dtype and shape, inputs, attributes in its op's schema
// order, and the place in the model file it came from. Inputs and parameters are nodes too.
// This header is the table of contents of ir/: graph building, the op table, shape
// inference and verification, printing, and the reference evaluator.
#ifndef KILN_IR_H
#define KILN_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/arena.h"
#include "runtime/diag.h"
#include "runtime/dtype.h"

#define IR_MAX_RANK 8
#define IR_MAX_ATTRS 6

// ---------------------------------------------------------------------------------------
// The op list. X(ENUM, "name"). The table of what each op is lives in ir/ops.c; adding an
// op means one line here, one entry there, and the functions that entry names.
#define IR_OPS(X)                                                                      \
  X(INPUT, "input") X(PARAM, "param") X(FULL, "full") X(IOTA, "iota") X(CAST, "cast")   \
  X(ADD, "add") X(SUB, "sub") X(MUL, "mul") X(DIV, "div") X(MAXIMUM, "maximum")         \
  X(MINIMUM, "minimum") X(NEG, "neg") X(EXP, "exp") X(LOG, "log") X(SQRT, "sqrt")       \
  X(RSQRT, "rsqrt") X(TANH, "tanh") X(ERF, "erf") X(GELU, "gelu") X(RELU, "relu")       \
  X(SIGMOID, "sigmoid") X(STEP, "step") X(AFFINE, "affine") X(MATMUL, "matmul")       \
  X(RESHAPE, "reshape")                                                                  \
  X(PERMUTE, "permute") X(CONCAT, "concat") X(SLICE, "slice") X(GATHER, "gather")       \
  X(REDUCE_SUM, "reduce_sum") X(REDUCE_MEAN, "reduce_mean") X(REDUCE_MAX, "reduce_max") \
  X(SOFTMAX, "softmax") X(LOG_SOFTMAX, "log_softmax") X(LAYERNORM, "layernorm")         \
  X(DROPOUT, "dropout") X(DROPOUT_GRAD, "dropout_grad") X(CROSS_ENTROPY, "cross_entropy") \
  X(KL_DIV, "kl_div") X(ATTENTION, "attention") X(ATTENTION_GRAD, "attention_grad")      \
  X(FUSED, "fused")                                                     \
  X(SCATTER_ADD, "scatter_add") X(GELU_GRAD, "gelu_grad") X(SILU, "silu")

typedef enum {
#define X(e, s) IR_OP_##e,
  IR_OPS(X)
#undef X
  IR_OP_COUNT
} IrOpKind;

// ---------------------------------------------------------------------------------------
// Shapes and attributes.
typedef struct IrShape {
  int rank;
  int64_t dim[IR_MAX_RANK];
} IrShape;

typedef enum {
  IR_ATTR_INT,    // a whole number (JSON number or config expression)
  IR_ATTR_FLOAT,  // a real number (JSON number or config expression)
  IR_ATTR_BOOL,   // true / false
  IR_ATTR_INTS,   // a list of whole numbers (shapes, permutations, axes)
  IR_ATTR_DTYPE,  // "f32", "i32", "i64"
} IrAttrKind;

typedef struct IrAttrSpec {
  const char *name;
  IrAttrKind kind;
  bool required;
  double def;  // default for INT/FLOAT/BOOL/DTYPE (a DType value); INTS default to empty
} IrAttrSpec;

typedef struct IrAttr {
  bool set;      // given in the file (otherwise the default is stored)
  int64_t i;     // INT, BOOL, DTYPE
  double f;      // FLOAT
  int n;         // INTS: count
  int64_t ints[IR_MAX_RANK];
} IrAttr;

// ---------------------------------------------------------------------------------------
// Parameter initialisers.
typedef enum { IR_INIT_NORMAL, IR_INIT_ZEROS, IR_INIT_ONES, IR_INIT_COPY } IrInitKind;

typedef struct IrNode IrNode;

typedef struct IrInit {
  IrInitKind kind;
  double std;           // NORMAL (mean 0)
  const char *copy_of;  // COPY: the parameter whose initial value this one takes
} IrInit;

// ---------------------------------------------------------------------------------------
// The node: one tensor of the graph.
struct IrNode {
  int id;                // index in IrGraph.nodes (a topological order after ir_graph_finish)
  IrOpKind op;
  const char *name;      // the tensor's name, unique in the graph
  const char *where;     // "models/x.json: nodes[12]" — where the file declared it
  DType dtype;
  IrShape shape;
  int n_in;
  IrNode **in;
  IrAttr attr[IR_MAX_ATTRS];  // in the op's schema order
  IrInit init;           // PARAM only
  int n_uses;            // consumers (filled by ir_graph_finish)
  struct IrBody *body;   // FUSED only: the ops the node computes (ir/fused.c)
};

// ---------------------------------------------------------------------------------------
// Fused nodes (ir/fused.c; built by passes/fuse.c after autodiff, XLA's fusion computation):
// a node of op `fused` computes a small body of ordinary nodes in one kernel. params[k]
// stands for the fused node's in[k]: a copy of that node (op, name, attributes, dtype,
// shape) with no inputs and id k, so that ops which name a node rather than read it
// (dropout_grad's forward node) see the original. Body nodes keep their names (a dropout's
// mask is keyed by it); their inputs are params or earlier body nodes; the last is the
// result. Body node ids are their positions in nodes[].
typedef enum { IR_FUSED_LOOP, IR_FUSED_GEMM, IR_FUSED_REDUCTION, IR_FUSED_KIND_COUNT } IrFusedKind;

// A gemm fusion's epilogue as the fuse pass chose it (codegen/lower_fused.c reads it, the
// shape rule checks it): C = gelu?(scale · A·B + bias[j]), then + R(i, j). (The backward's
// gelu_grad is a kernel of its own: as a GEMM epilogue it ran 1.45x slower, session 10.)
typedef enum {
  IR_GEMM_RESIDUAL_NONE,
  IR_GEMM_RESIDUAL_ADD,  // + R, R of C's shape
} IrGemmResidual;

typedef struct IrGemmEpilogue {
  int matmul;               // body index of the matmul
  double scale;             // 1: none
  int bias;                 // param index of bias[j] (N elements), or -1
  bool gelu;
  IrGemmResidual residual;
  int residual_param;       // param index of R, or -1
} IrGemmEpilogue;

typedef struct IrBody {
  int n_params;
  IrNode **params;
  int n;
  IrNode **nodes;
  const IrGemmEpilogue *gemm;  // kind gemm only
} IrBody;

const char *ir_fused_kind_name(int kind);  // "loop", "gemm", "reduction"
// The op's name as printed; a fused node's says its kind ("fused.loop"). buf may be used.
const char *ir_op_label(const IrNode *n, char *buf, size_t size);
static inline IrNode *ir_body_root(const IrBody *b) { return b->nodes[b->n - 1]; }
// Text of the body for printers and kernel names: "mul, add, gelu" (ops only), or with
// `full` every node with its inputs (p0, %1) and attributes, and for a dropout or
// dropout_grad which of the body's masks it uses (ir_body_mask) and its p, not the mask's
// name: bodies alike in everything but their dropouts' names get one kernel.
const char *ir_body_str(const IrNode *fused, bool full, char *buf, size_t size);
// The dropout masks of a body: body node i (a dropout or dropout_grad) uses the mask of
// dropout node *fwd (itself, or the dropout_grad's in[1]); returns that mask's index among
// the distinct masks of the body, numbered in body order. -1 when node i is neither.
int ir_body_mask(const IrBody *b, int i, const IrNode **fwd);

typedef struct IrConfigEntry {
  const char *name;
  double value;
  bool is_int;
} IrConfigEntry;

typedef struct IrLoss {
  const char *name;
  IrNode *node;
} IrLoss;

// A gradient recorded by autodiff: d(loss)/d(of) is the node grad (of's shape).
typedef struct IrGrad {
  IrNode *of;    // a parameter (or an input)
  IrNode *grad;
  bool reached;  // the loss depends on `of` (else grad is zeros, and optimisers leave it alone)
} IrGrad;

typedef struct IrNameMap IrNameMap;

// A training step's parameter updates, recorded by the optimizer pass (passes/optimizer.c)
// so the trainer reads a typed table instead of positions it would have to know. Outputs
// are named by their position in g->outputs, which rewrites keep.
typedef struct IrUpdate {
  IrNode *param;                // op param
  IrNode *state[2];             // its optimiser state inputs: m, and v for AdamW (else NULL)
  int grad;                     // its entry in g->grads
  int new_value, new_state[2];  // positions in g->outputs (-1: none)
  bool decay;                   // weight decay applies (not biases, not LayerNorm weights)
} IrUpdate;

typedef struct IrTrainStep {
  IrUpdate *updates;
  int n_updates;
  IrNode *lr, *c1, *c2;   // the step's scalar inputs; c1, c2 (1 - beta^t): AdamW only
  int norm;               // position in g->outputs of the gradient norm before clipping
  int n_model_outputs;    // the model's own outputs come first in g->outputs
} IrTrainStep;

// A cross_entropy's denominator as a run-time input (passes/loss_denominator.c): the trainer
// counts the positions of `labels` (a graph input) not equal to ignore_index, sums the
// counts of the step's processes and micro-batches, and sets `input` (an f32 scalar).
typedef struct IrLossDenominator {
  IrNode *input, *labels;
  int64_t ignore_index;
} IrLossDenominator;

typedef struct IrGraph {
  Arena arena;             // everything below lives in it; freed at once
  const char *file;        // the model file it was read from
  IrNode **nodes;          // all nodes; topologically ordered after ir_graph_finish
  int n_nodes, cap_nodes;
  IrNameMap *names;        // name -> node
  IrNode **outputs;
  int n_outputs;
  IrLoss *losses;
  int n_losses;
  IrConfigEntry *config;
  int n_config;
  IrGrad *grads;           // filled by pass_autodiff: one per parameter (and input)
  int n_grads;
  IrTrainStep *train;      // filled by pass_optimizer; NULL without it
  IrLossDenominator *denominators;  // filled by pass_loss_denominator
  int n_denominators;
} IrGraph;

// ---------------------------------------------------------------------------------------
// The node builder (ir/build.c): adds nodes to a graph with fresh names "<prefix>:<k>",
// attributes set and the shape inferred at once (a generated node that fails its shape
// rule is a compiler bug: asserted). Node ids of built nodes are positions at the end of
// g->nodes until the next ir_graph_finish.
typedef struct IrBuilder {
  IrGraph *g;
  const char *prefix;  // names of new nodes
  const char *where;   // their place
  int k;               // next name suffix
} IrBuilder;

void ir_builder_init(IrBuilder *b, IrGraph *g, const char *prefix, const char *where);
IrNode *ir_build(IrBuilder *b, IrOpKind op, int n_in, IrNode *const *in);  // attrs: defaults
IrNode *ir_build_done(IrBuilder *b, IrNode *n);                           // infers its shape
void ir_set_int(IrNode *n, const char *name, int64_t v);
void ir_set_float(IrNode *n, const char *name, double v);
void ir_set_ints(IrNode *n, const char *name, int count, const int64_t *v);
IrNode *ir_build_unary(IrBuilder *b, IrOpKind op, IrNode *x);
IrNode *ir_build_binary(IrBuilder *b, IrOpKind op, IrNode *x, IrNode *y);
IrNode *ir_build_affine(IrBuilder *b, IrNode *x, double scale, double shift);
IrNode *ir_build_full(IrBuilder *b, const IrShape *shape, double value, DType dt);
IrNode *ir_build_iota(IrBuilder *b, const IrShape *shape, int axis, DType dt);
IrNode *ir_build_cast(IrBuilder *b, IrNode *x, DType dt);                 // x if already dt
IrNode *ir_build_reshape(IrBuilder *b, IrNode *x, const IrShape *shape);  // x if same shape
IrNode *ir_build_permute(IrBuilder *b, IrNode *x, const int64_t *perm);
IrNode *ir_build_matmul(IrBuilder *b, IrNode *x, IrNode *y, bool ta, bool tb);
IrNode *ir_build_slice(IrBuilder *b, IrNode *x, int axis, int64_t start, int64_t end);
IrNode *ir_build_concat(IrBuilder *b, int count, IrNode *const *xs, int axis);
IrNode *ir_build_reduce(IrBuilder *b, IrOpKind op, IrNode *x, int n_axes, const int64_t *axes,
                        bool keepdims);
IrNode *ir_build_softmax(IrBuilder *b, IrOpKind op, IrNode *x, int64_t axis);
// x summed over broadcast dims down to shape; x broadcast up to shape.
IrNode *ir_build_sum_to(IrBuilder *b, IrNode *x, const IrShape *shape);
IrNode *ir_build_expand(IrBuilder *b, IrNode *x, const IrShape *shape);

// ---------------------------------------------------------------------------------------
// The op table (ir/ops.c).
typedef bool (*IrShapeFn)(IrNode *n, Diag *d);  // sets n->dtype, n->shape from inputs+attrs

typedef struct IrEvalMode {
  bool training;   // dropout active
  uint64_t seed;   // dropout stream
} IrEvalMode;

// Reference kernel: computes node n from its inputs, all held as doubles in row-major order.
// Fails (with a message) only on data errors such as an index out of range.
typedef bool (*IrRefFn)(const IrNode *n, double *out, const double *const *in,
                        const IrEvalMode *mode, Diag *d);

enum {
  IR_FLAG_SOURCE = 1 << 1,  // no inputs: input, param, full, iota
  IR_FLAG_INT_OK = 1 << 2,  // accepts integer dtypes
  IR_FLAG_VIEW = 1 << 3,    // the output is in[0]'s elements in the same order: it shares
                            // in[0]'s buffer (no kernel; memory planning follows it through)
  IR_FLAG_RANDOM = 1 << 4,  // draws the dropout stream when training: never constant-folded
};

// How an op reads its inputs, for fusion (TVM's TOpPattern), from the most to the least
// fusible. The elementwise kinds (ir_op_is_elementwise) fuse into loops, prologues and
// epilogues; a reduction is a fusion group's row op.
typedef enum IrPattern {
  IR_PATTERN_ELEMENTWISE,  // out[i] reads element i of each input (all of out's shape)
  IR_PATTERN_BROADCAST,    // out[i] reads each input at i after NumPy broadcasting
  IR_PATTERN_INJECTIVE,    // each output element is one input element (layout, gather)
  IR_PATTERN_REDUCTION,    // combines elements along axes (reductions, softmax, layernorm, losses)
  IR_PATTERN_OPAQUE,       // anything else: sources, matmul, attention, scatter, fused
} IrPattern;

// FLOPs of one evaluation of node n (ir/flops.c): the op table's cost column.
typedef double (*IrFlopsFn)(const IrNode *n);

// Rows rule (ir/rows.c): which inputs carry node n's rows, as a bit mask of input
// positions, or 0 when n is not row-wise here. A row is index i of the second-to-last axis
// (all leading dims fixed). Row-wise means, in inference: output row i is computed from row
// i of each input in the mask (each has n's rank and n's dims but the last) and from all of
// every other input, so computing the op on some rows of the masked inputs gives those rows
// of the output (passes/rowprune.c moves row selections up through such ops).
typedef unsigned (*IrRowsFn)(const IrNode *n);

// Gradient rule (ir/grad_rules.c): given dy, the gradient of the loss w.r.t. node n (n's
// shape), builds through b the gradient dx[k] of each input k with need[k] set (n's input
// shape), or leaves dx[k] NULL where no gradient flows (integer inputs, indices).
typedef bool (*IrGradFn)(IrBuilder *b, IrNode *n, IrNode *dy, const bool *need, IrNode **dx,
                         Diag *d);

typedef struct IrOpInfo {
  const char *name;
  int min_in, max_in;  // max_in < 0: any number >= min_in
  IrPattern pattern;   // how it fuses
  unsigned flags;      // IR_FLAG_*
  const IrAttrSpec *attrs;  // NULL-name terminated
  IrShapeFn shape;
  IrRefFn ref;
  IrGradFn grad;       // NULL: not differentiable (autodiff reports it when a loss needs it)
  IrFlopsFn flops;     // FLOPs of one evaluation (ir_count_flops)
  IrRowsFn rows;       // the inputs that carry the rows (ir_row_inputs); NULL: not row-wise
  const char *doc;     // one line for `kiln ops` and docs
} IrOpInfo;

extern const IrOpInfo ir_ops[IR_OP_COUNT];

// Columns read as questions.
static inline bool ir_op_is_elementwise(IrOpKind op) {  // elementwise or broadcast
  return ir_ops[op].pattern == IR_PATTERN_ELEMENTWISE || ir_ops[op].pattern == IR_PATTERN_BROADCAST;
}
static inline bool ir_op_is_view(IrOpKind op) { return ir_ops[op].flags & IR_FLAG_VIEW; }
static inline unsigned ir_row_inputs(const IrNode *n) {  // see IrRowsFn; 0: not row-wise
  return ir_ops[n->op].rows ? ir_ops[n->op].rows(n) : 0;
}

bool ir_op_lookup(const char *name, IrOpKind *out);
int ir_attr_index(IrOpKind op, const char *name);  // -1 if the op has no such attribute
int ir_op_n_attrs(IrOpKind op);
// Attribute values by name; the name must be in the op's schema (asserted).
int64_t ir_attr_int(const IrNode *n, const char *name);
double ir_attr_float(const IrNode *n, const char *name);
const IrAttr *ir_attr(const IrNode *n, const char *name);

// ---------------------------------------------------------------------------------------
// Graph building (ir/graph.c).
void ir_graph_init(IrGraph *g, const char *file);
void ir_graph_free(IrGraph *g);
// Adds a node with the given name (must be new: ir_graph_find first). Inputs are set later.
IrNode *ir_graph_add(IrGraph *g, IrOpKind op, const char *name, const char *where);
IrNode *ir_graph_find(const IrGraph *g, const char *name);
// The value of config entry `name` (the model file's config after --set), else `fallback`.
double ir_graph_config(const IrGraph *g, const char *name, double fallback);
// Drops the nodes with remove[id] set (none may be an input of a kept node, an output or a
// loss) and renumbers the rest in order; call ir_graph_finish afterwards.
void ir_graph_remove(IrGraph *g, const bool *remove);
// Drops n's name from the graph's names (a pass that takes n out of g->nodes, e.g. into a
// fused node's body); the node itself stays in the arena.
void ir_graph_forget(IrGraph *g, const IrNode *n);
// Orders nodes topologically (reports cycles by name), counts uses, and runs shape
// inference on every node in order. After it, node ids are positions in g->nodes.
bool ir_graph_finish(IrGraph *g, Diag *d);

// ---------------------------------------------------------------------------------------
// Graph rewriting (ir/rewrite.c), shared by the passes. A pass fills repl[id] (NULL: keep)
// with the node that replaces node id, then applies the map once: every input edge, loss
// and gradient follows the chain of replacements; an output keeps its node and name (`kiln
// run` writes outputs by name) by becoming a reshape of its replacement to the same shape.
IrNode *ir_rewrite_resolve(IrNode *const *repl, int n_repl, IrNode *x);
void ir_rewrite_inputs(IrNode *const *repl, int n_repl, IrNode *n);  // n's inputs only
void ir_rewrite_apply(IrGraph *g, IrNode *const *repl, int n_repl);
// Is n an output, a loss or a gradient (a value the caller reads)?
bool ir_is_root(const IrGraph *g, const IrNode *n);
// Removes the nodes that no output, loss or gradient reaches (inputs and parameters stay:
// users bind them by name), then re-finishes the graph (order, ids, use counts, shapes).
// Returns the number removed, or -1 (with d) if finishing fails.
int ir_remove_dead(IrGraph *g, Diag *d);

// ---------------------------------------------------------------------------------------
// Shapes (ir/shape.c).
int64_t ir_numel(const IrShape *s);
// The most elements a tensor may have (checked for every node by ir_graph_finish).
#define IR_MAX_NUMEL ((int64_t)1 << 48)
bool ir_shape_eq(const IrShape *a, const IrShape *b);
// "[1,120,768]"
const char *ir_shape_str(const IrShape *s, char *buf, size_t n);
// NumPy broadcasting of two shapes; false (with message) when they do not broadcast.
bool ir_broadcast(const IrShape *a, const IrShape *b, IrShape *out, Diag *d);

// ---------------------------------------------------------------------------------------
// Verifier (ir/verify.c): runs after parsing and after every pass. Re-infers every shape
// and checks it against the node, arity, attributes, names, order, outputs and losses.
bool ir_verify(const IrGraph *g, Diag *d);

// ---------------------------------------------------------------------------------------
// Printers (ir/print.c).
#include <stdio.h>
void ir_print_text(const IrGraph *g, FILE *f);
void ir_print_dot(const IrGraph *g, FILE *f);

// Counts (ir/print.c): parameters' elements, and FLOPs of one evaluation (the sum of the
// op table's flops column over the nodes).
int64_t ir_count_params(const IrGraph *g);
double ir_count_flops(const IrGraph *g);

// ---------------------------------------------------------------------------------------
// Reference evaluator (ir/eval.c): plain loops in double, the oracle for everything else.
// values[i] is node i's data (ir_numel doubles). The caller fills inputs and parameters;
// ir_eval allocates and computes the rest (those needed by `want`, or all if want is NULL).
typedef struct IrValues {
  int n;
  double **v;
} IrValues;

void ir_values_init(IrValues *vals, const IrGraph *g);
void ir_values_free(IrValues *vals);
bool ir_eval(const IrGraph *g, IrValues *vals, const bool *want, const IrEvalMode *mode,
             Diag *d);
// The bytes vals holds once ir_eval(g, vals, want, ...) is done: a double for every element
// of every value it computes, reads or already holds (it frees none before the end).
uint64_t ir_eval_bytes(const IrGraph *g, const IrValues *vals, const bool *want);
// One node from its inputs' values, as ir_eval computes it: the reference kernel, then the
// check that integer results fit the dtype (constant folding evaluates nodes with it too).
bool ir_eval_node(const IrNode *n, double *out, const double *const *in, const IrEvalMode *mode,
                  Diag *d);

// The dropout stream: a counter-based generator, so a mask depends only on
// (seed, node name, element index) and not on order or thread count.
uint64_t ir_rng_key(uint64_t seed, const char *name);  // ir_rng_key_of(seed, name hash)
uint64_t ir_rng_name_hash(const char *name);              // FNV-1a (compile-time half of the key)
uint64_t ir_rng_key_of(uint64_t seed, uint64_t name_hash);
double ir_rng_uniform(uint64_t key, uint64_t counter);  // in [0, 1)
// The name hash of an attention node's dropout stream (ir/attention.c): its rng_hash
// attribute, or the hash of its own name when that is 0.
uint64_t ir_attention_rng_hash(const IrNode *n);

#endif
