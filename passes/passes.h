// Passes: the transformations pipeline.c lists in the order they run. Graph passes rewrite
// the IR (the verifier runs after each one; `kiln dump --after NAME` shows the graph after
// any of them); program passes work on the code generator's kernel steps and run inside
// codegen, which asks pass_disabled() whether to.
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "ir/ir.h"

// What the pipeline is run for. Passes read what they need from it.
typedef struct PassOptimizer PassOptimizer;

typedef struct PassOptions {
  const char *loss;  // training/grad: the loss autodiff differentiates; NULL: inference only
  bool wrt_inputs;   // autodiff also records gradients of f32 inputs
  bool training;     // the graph will run with dropout active even without a loss (tests
                     // that run one graph in both modes); a loss implies it
  const PassOptimizer *optimizer;  // train: the update the "optimizer" pass appends; NULL: none
  bool bf16;  // --precision bf16: the "precision" pass gives GEMMs bf16 operands (inference)
  bool loss_denominators;  // train, data parallel or accumulating: pass_loss_denominator runs
  bool int8;  // --precision int8: linear layers' GEMMs take int8 operands (inference)
  bool recompute_layers;  // --recompute layers: the backward recomputes each repeated block
                          // instance (encoder layer) from its inputs (pass_recompute)
} PassOptions;

typedef bool (*PassFn)(IrGraph *g, const PassOptions *o, Diag *d);

typedef enum PassStage {
  PASS_GRAPH,    // on the IR, by pass_run_pipeline
  PASS_PROGRAM,  // on codegen's kernel steps, by codegen (run is NULL)
} PassStage;

typedef struct Pass {
  const char *name;
  const char *doc;
  PassFn run;
  PassStage stage;
  bool required;  // not an optimisation: --disable-pass refuses it
} Pass;

// The pipeline, in order. "parse" (the graph as the frontend built it) comes first. The
// planned order: parse, fuse_attention (before autodiff: the fused op has its own gradient
// that recomputes instead of storing scores), autodiff, simplify, cse, dce, rowprune, precision, fuse,
// schedule, recompute, then the program pass memplan. Each pass adds its own line to pipeline.c.
extern const Pass pass_pipeline[];
extern const int pass_count;

// The pass named `name`, or NULL.
const Pass *pass_find(const char *name);
// Whether pass `name` is among the n_disabled names of `disabled` (--disable-pass).
bool pass_disabled(const char *const *disabled, int n_disabled, const char *name);

// Runs the graph passes up to and including pass `stop` (NULL: all), verifying after each.
// Names in `disabled` (n_disabled of them) are skipped. Unknown names are errors.
bool pass_run_pipeline(IrGraph *g, const PassOptions *o, const char *stop, const char *const *disabled,
                       int n_disabled, Diag *d);

// Reverse-mode autodiff (passes/autodiff.c): appends to g the backward graph of the loss
// named `loss` and records in g->grads d(loss)/d(p) for every parameter p (and every f32
// input if wrt_inputs); zeros where the loss does not depend on it. Fails, naming the node,
// when the loss depends through a float path on an op without a gradient rule.
bool pass_autodiff(IrGraph *g, const char *loss, bool wrt_inputs, Diag *d);

// Fused attention (passes/fuse_attention.c): replaces each head-split, matmul, scale, mask,
// softmax, dropout, matmul, merge chain whose intermediates have no other users by one
// attention node, so the [batch, heads, n, n] scores are never stored.
bool pass_fuse_attention(IrGraph *g, const PassOptions *o, Diag *d);
// The optimisation passes, one file each (passes/<name>.c), in pipeline order.
bool pass_simplify(IrGraph *g, const PassOptions *o, Diag *d);
bool pass_cse(IrGraph *g, const PassOptions *o, Diag *d);
bool pass_dce(IrGraph *g, const PassOptions *o, Diag *d);
// Row pruning (passes/rowprune.c), inference only: when every reader of a tensor takes
// some of its rows (slice or batched gather along the second-to-last axis), the row-wise
// ops before it (ir_row_inputs) compute those rows only. Same values, bit for bit.
bool pass_rowprune(IrGraph *g, const PassOptions *o, Diag *d);
bool pass_schedule(IrGraph *g, const PassOptions *o, Diag *d);
// The peak of live intermediate bytes when the nodes run in the graph's order (the measure
// pass_schedule lowers): parameters and inputs excluded, reshapes free.
int64_t pass_schedule_peak(const IrGraph *g);
// Reduced precision (passes/precision.c): with o->bf16, every f32 matmul gets bf16=true
// (operands rounded to bf16, f32 accumulation); with o->int8, every f32 matmul of a
// parameter gets int8=true (int8 operands, int32 sums); refuses a training pipeline.
bool pass_precision(IrGraph *g, const PassOptions *o, Diag *d);
// The rule pass_precision refuses by, for callers that check before loading a model (the
// library's kiln_model_open, and through it the CLI and Python): int8 is inference only.
bool pass_precision_supported(const PassOptions *o, Diag *d);
// Fusion (passes/fuse.c): groups of nodes one kernel computes become `fused` nodes.
bool pass_fuse(IrGraph *g, const PassOptions *o, Diag *d);
// Recomputation (passes/recompute.c), with o->recompute_layers and a loss: the backward
// reads, of the values computed inside each instance of a repeated block call, only those
// the forward reads outside it; it reads the others from clones of their forward nodes,
// ordered just before their first reader (activation checkpointing). Same values, bit
// for bit. pass_recompute_instance: the part of a node's place (`where`) that names the
// outermost repeated block instance that made it (*len bytes), or NULL.
bool pass_recompute(IrGraph *g, const PassOptions *o, Diag *d);
const char *pass_recompute_instance(const char *where, size_t *len);
// The optimiser as graph ops (passes/optimizer.c), run by the pipeline after autodiff when
// PassOptions.optimizer is set. Adds f32 scalar inputs PASS_OPT_LR (the step's learning
// rate) and, for AdamW, PASS_OPT_C1 / PASS_OPT_C2 (1 - beta1^t, 1 - beta2^t); one state
// input per parameter and moment named as in checkpoints ("adam.m.<param>", "adam.v.<param>"
// or "sgd.m.<param>"); and appends to g->outputs, for each parameter in g->grads order,
// its updated value, then its updated state(s), and last the gradient norm before
// clipping; and records all of it, typed, in g->train (IrTrainStep: per parameter its
// state inputs and the positions of its new value and state). Gradients are clipped to a global L2 norm of `clip`; AdamW decays every
// parameter but biases and LayerNorm weights (pass_optimizer_decays).
struct PassOptimizer {
  bool sgd;  // false: AdamW
  double beta1, beta2, eps, weight_decay, momentum, clip;
};
#define PASS_OPT_WHERE "optimizer (train)"  // the `where` of every node the pass adds
#define PASS_OPT_LR "train.lr"
#define PASS_OPT_C1 "train.adam_c1"
#define PASS_OPT_C2 "train.adam_c2"
bool pass_optimizer(IrGraph *g, const PassOptimizer *o, Diag *d);

// Global loss denominators (passes/loss_denominator.c), run before autodiff when
// PassOptions.loss_denominators is set: every cross_entropy whose labels are a graph input
// gets a third input, an f32 scalar input "train.denominator.<node>" at PASS_OPT_WHERE,
// recorded in g->denominators, so that a trainer whose step is spread over processes or
// micro-batches divides by the step's global count of labels (over their number), not by
// each share's own: the shares' averaged gradient is then the whole batch's.
#define PASS_LOSS_DENOMINATOR_PREFIX "train.denominator."
bool pass_loss_denominator(IrGraph *g, const PassOptions *o, Diag *d);
bool pass_optimizer_decays(const char *param);
const char *pass_optimizer_state_prefix(const PassOptimizer *o, int which);  // which: 0 m, 1 v

#endif
