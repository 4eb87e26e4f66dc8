// `kiln train`: training a model on a data file with the JIT. The loss and its gradients
// are compiled once (training mode, dropout on); each step binds a batch, runs the plan and
// updates the parameters with AdamW or SGD. Checkpoints hold weights and optimiser state,
// and everything random (data order, dropout) depends only on (seed, step), so a resumed
// run ends with the same weights as an uninterrupted one.
//
// The optimiser update is compiled with the rest (the pipeline's "optimizer" pass, see
// passes/optimizer.c): one step is one plan run, after which the updated parameters and
// state are copied back into the buffers the next step reads (copy-back, not in place:
// other readers of a parameter, such as the backward matmuls that propagate through it,
// are not ordered before its update). The first version's update in C over the f32
// buffers stays as the test oracle: KILN_TRAIN_OPTIMIZER=c selects it.
#define _POSIX_C_SOURCE 200809L  // sigaction
#include <assert.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/compile.h"
#include "api/bind.h"
#include "app/cli.h"
#include "api/evaluate.h"
#include "data/mlm.h"
#include "api/train.h"
#include "passes/passes.h"

// ---------------------------------------------------------------------------------------
// Random numbers: the IR's counter-based mix (ir_rng_key_of, the one the dropout stream
// uses), so every draw is a function of its key alone.
static uint64_t hash2(uint64_t a, uint64_t b) { return ir_rng_key_of(a, b); }

enum { STREAM_SHUFFLE = 1, STREAM_DROPOUT = 2 };

// ---------------------------------------------------------------------------------------
// The data: one tensor per model input, (N, ...input shape without its batch dim...),
// converted once into the input's dtype. Batch rows are copied out by example index.

typedef struct TrainData {
  FeExamples *in;  // the inputs; value[node id] holds one batch (batch, ...)
  int n_in;
  int64_t n_examples, batch;
  int64_t *perm;       // the current epoch's order (n_examples)
  int64_t perm_epoch;  // which epoch perm holds; -1: none
  uint64_t seed;
} TrainData;

// Binds every input the program computes with (value[id] != NULL), except the optimiser's,
// to a tensor of the data file (fe_load_examples checks shapes and example counts).
static bool data_load(const IrGraph *g, const StFile *f, void *const *value, uint64_t seed,
                      TrainData *td, Diag *d) {
  td->in = calloc((size_t)g->n_nodes + 1, sizeof *td->in);
  td->perm_epoch = -1;
  td->seed = seed;
  td->batch = (int64_t)ir_graph_config(g, "batch", -1);
  if (!fe_load_examples(g, f, value, &td->batch, PASS_OPT_WHERE, td->in, &td->n_in, &td->n_examples, d))
    return false;
  if (td->n_examples < td->batch)
    return diag_error(d, "%s: %lld examples, fewer than one batch (%lld)", f->path,
                      (long long)td->n_examples, (long long)td->batch);
  td->perm = malloc((size_t)td->n_examples * sizeof *td->perm);
  return true;
}

static void data_free(TrainData *td) {
  fe_examples_free(td->in, td->n_in);
  free(td->in);
  free(td->perm);
}

// The example at position k of the stream: epoch k / N, in that epoch's seeded
// permutation (Fisher-Yates keyed by (seed, epoch)).
static int64_t data_example(TrainData *td, int64_t k) {
  int64_t n = td->n_examples, epoch = k / n;
  if (epoch != td->perm_epoch) {
    uint64_t key = hash2(hash2(td->seed, STREAM_SHUFFLE), (uint64_t)epoch);
    for (int64_t i = 0; i < n; i++) td->perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)(hash2(key, (uint64_t)i) % (uint64_t)(i + 1));
      int64_t t = td->perm[i];
      td->perm[i] = td->perm[j];
      td->perm[j] = t;
    }
    td->perm_epoch = epoch;
  }
  return td->perm[k % n];
}

// Copies the batch of step `step` (0-based) into the input buffers.
static void data_bind_batch(TrainData *td, int64_t step, void *const *value) {
  for (int64_t b = 0; b < td->batch; b++) {
    int64_t ex = data_example(td, step * td->batch + b);
    for (int i = 0; i < td->n_in; i++) {
      const FeExamples *in = &td->in[i];
      memcpy((char *)value[in->node->id] + (size_t)b * in->row_bytes, in->rows + (size_t)ex * in->row_bytes,
             in->row_bytes);
    }
  }
}

// ---------------------------------------------------------------------------------------
// The optimiser (in C over f32 buffers, for now): AdamW with decoupled weight decay, or
// SGD with momentum; a linear warm-up over 10% of the steps then linear decay to 0; the
// gradients clipped to a global L2 norm of 1.

typedef enum { OPT_ADAMW, OPT_SGD } OptKind;

typedef struct TrainParam {
  const IrNode *node;
  float *w;        // p.value[param id]   (numel)
  const float *g;  // p.value[grad id]    (numel)
  float *m, *v;    // first / second moments (v: AdamW only); graph: the state inputs
  const float *w_new, *m_new, *v_new;  // graph: the update's outputs, copied back
  int64_t numel;
  bool decay;      // weight decay applies (not biases, not LayerNorm weights)
  bool reached;    // the loss depends on it; else it is left alone (torch skips grad None)
} TrainParam;

typedef struct Optimizer {
  OptKind kind;
  bool graph;      // the compiled update (else the C oracle below)
  float *lr_in, *c1_in, *c2_in;  // graph: the step's scalars (c1, c2: AdamW)
  const float *norm_out;         // graph: the gradient norm before clipping
  double lr, beta1, beta2, eps, weight_decay, momentum, clip;
  int64_t steps, warmup;
  TrainParam *p;
  int n;
} Optimizer;

static double opt_lr(const Optimizer *o, int64_t step) {  // step: 0-based
  if (step < o->warmup) return o->lr * (double)(step + 1) / (double)o->warmup;
  return o->lr * (double)(o->steps - step) / (double)(o->steps - o->warmup);
}

// The compiled update: the step's scalars go in before the run.
static void opt_graph_inputs(Optimizer *o, int64_t step) {
  double t = (double)(step + 1);
  *o->lr_in = (float)opt_lr(o, step);
  if (o->kind == OPT_ADAMW) {
    *o->c1_in = (float)(1.0 - pow(o->beta1, t));
    *o->c2_in = (float)(1.0 - pow(o->beta2, t));
  }
}

// ... and its results come back after it. Returns the gradient norm before clipping.
static double opt_graph_copy_back(Optimizer *o) {
  for (int k = 0; k < o->n; k++) {
    TrainParam *p = &o->p[k];
    if (!p->reached) continue;  // its outputs are its inputs
    size_t bytes = (size_t)p->numel * sizeof(float);
    memcpy(p->w, p->w_new, bytes);
    memcpy(p->m, p->m_new, bytes);
    if (p->v) memcpy(p->v, p->v_new, bytes);
  }
  return *o->norm_out;
}

// The C oracle: one update with the gradients of step `step` (0-based). Returns the gradient norm
// before clipping.
static double opt_update(Optimizer *o, int64_t step) {
  double sq = 0;
  for (int k = 0; k < o->n; k++)
    for (int64_t i = 0; i < o->p[k].numel; i++) sq += (double)o->p[k].g[i] * o->p[k].g[i];
  double norm = sqrt(sq);
  double scale = norm > o->clip ? o->clip / (norm + 1e-6) : 1.0;
  double lr = opt_lr(o, step);
  double t = (double)(step + 1);
  double c1 = 1.0 - pow(o->beta1, t), c2 = 1.0 - pow(o->beta2, t);
  for (int k = 0; k < o->n; k++) {
    TrainParam *p = &o->p[k];
    for (int64_t i = 0; p->reached && i < p->numel; i++) {
      float g = (float)(p->g[i] * scale);
      if (o->kind == OPT_SGD) {
        p->m[i] = (float)(o->momentum * p->m[i] + g);
        p->w[i] = (float)(p->w[i] - lr * p->m[i]);
        continue;
      }
      p->m[i] = (float)(o->beta1 * p->m[i] + (1 - o->beta1) * g);
      p->v[i] = (float)(o->beta2 * p->v[i] + (1 - o->beta2) * (double)g * g);
      double w = p->w[i];
      if (p->decay) w -= lr * o->weight_decay * w;  // decoupled (AdamW), as torch applies it
      w -= lr * (p->m[i] / c1) / (sqrt(p->v[i] / c2) + o->eps);
      p->w[i] = (float)w;
    }
  }
  return norm;
}

// ---------------------------------------------------------------------------------------
// Checkpoints: the parameters by name, the optimiser's state ("adam.m.<name>",
// "adam.v.<name>", or "sgd.m.<name>"), "train.step" (steps done) and "train.steps" (the
// run's length, which the schedule depends on).

static const char *state_prefix(const Optimizer *o, int which) {
  return o->kind == OPT_SGD ? "sgd.m." : which == 0 ? "adam.m." : "adam.v.";
}

static char *state_name(const Optimizer *o, int which, const char *param) {
  const char *pre = state_prefix(o, which);
  char *s = malloc(strlen(pre) + strlen(param) + 1);
  strcpy(s, pre);
  strcat(s, param);
  return s;
}

static StTensor f32_tensor(char *name, const IrNode *n, void *data) {
  StTensor t = {.name = name, .dtype = DT_F32, .rank = n->shape.rank, .data = data};
  for (int i = 0; i < n->shape.rank; i++) t.shape[i] = n->shape.dim[i];
  t.nbytes = (size_t)ir_numel(&n->shape) * sizeof(float);
  return t;
}

// with_state false: the parameters alone (the -o weights file).
static bool ckpt_write(const char *path, const Optimizer *o, int64_t done, bool with_state, Diag *d) {
  int n_state = o->kind == OPT_SGD ? 1 : 2;
  StTensor *ts = calloc((size_t)o->n * 3 + 2, sizeof *ts);
  int n = 0;
  for (int k = 0; k < o->n; k++) ts[n++] = f32_tensor((char *)o->p[k].node->name, o->p[k].node, o->p[k].w);
  int64_t counters[2] = {done, o->steps};
  if (with_state) {
    for (int which = 0; which < n_state; which++)
      for (int k = 0; k < o->n; k++)
        ts[n++] = f32_tensor(state_name(o, which, o->p[k].node->name), o->p[k].node,
                             which == 0 ? o->p[k].m : o->p[k].v);
    ts[n++] = (StTensor){.name = "train.step", .dtype = DT_I64, .nbytes = 8, .data = &counters[0]};
    ts[n++] = (StTensor){.name = "train.steps", .dtype = DT_I64, .nbytes = 8, .data = &counters[1]};
  }
  bool ok = st_write(path, ts, n, d);
  if (with_state)
    for (int i = o->n; i < o->n * (1 + n_state); i++) free(ts[i].name);
  free(ts);
  return ok;
}

static bool ckpt_counter(const StFile *f, const char *name, int64_t *out, Diag *d) {
  const StTensor *t = st_find(f, name);
  if (!t) return diag_error(d, "%s: \"%s\" is missing: not a kiln train checkpoint", f->path, name);
  if (st_numel(t) != 1 || dt_is_float(t->dtype))
    return diag_error(d, "%s: \"%s\" must be a single integer", f->path, name);
  *out = (int64_t)dt_load(t->dtype, t->data, 0);
  return true;
}

// Loads the optimiser state of a checkpoint (its weights are bound like --weights) and
// returns the steps it has done.
static bool ckpt_read_state(const StFile *f, Optimizer *o, int64_t *done, Diag *d) {
  int64_t steps;
  if (!ckpt_counter(f, "train.step", done, d) || !ckpt_counter(f, "train.steps", &steps, d)) return false;
  if (steps != o->steps)
    return diag_error(d, "%s: the checkpoint is of a run of %lld steps, not %lld (the learning-rate "
                      "schedule depends on it): pass --steps %lld", f->path, (long long)steps,
                      (long long)o->steps, (long long)steps);
  if (*done < 0 || *done > steps)
    return diag_error(d, "%s: train.step %lld is outside [0, %lld]", f->path, (long long)*done, (long long)steps);
  for (int which = 0; which < (o->kind == OPT_SGD ? 1 : 2); which++)
    for (int k = 0; k < o->n; k++) {
      char *name = state_name(o, which, o->p[k].node->name);
      const StTensor *t = st_find(f, name);
      bool ok = t && st_numel(t) == o->p[k].numel;
      if (!t)
        diag_error(d, "%s: optimiser state \"%s\" is missing (a checkpoint of another optimiser?)",
                   f->path, name);
      else if (!ok)
        diag_error(d, "%s: \"%s\" has %lld values, not %lld", f->path, name, (long long)st_numel(t),
                   (long long)o->p[k].numel);
      else
        ok = dt_convert(t->dtype, t->data, DT_F32, which == 0 ? o->p[k].m : o->p[k].v,
                        (size_t)o->p[k].numel, name, d);
      free(name);
      if (!ok) return false;
    }
  return true;
}

// "out.safetensors" -> "out.step-10.safetensors"
static void ckpt_path(const char *out, int64_t step, char *buf, size_t size) {
  size_t n = strlen(out);
  const char *ext = ".safetensors";
  size_t e = strlen(ext);
  bool has = n > e && !strcmp(out + n - e, ext);
  snprintf(buf, size, "%.*s.step-%lld%s", (int)(has ? n - e : n), out, (long long)step, ext);
}

// ---------------------------------------------------------------------------------------
// Progress on stderr: \r updates every step on a terminal, a line every 10 steps otherwise.

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(int64_t step, int64_t steps, double loss, double lr, double norm,
                     int64_t examples, double elapsed, int64_t done_here, bool tty) {
  bool last = step == steps;
  if (!tty && !(step == 1 || step % 10 == 0 || last)) return;
  double per_step = done_here ? elapsed / (double)done_here : 0;
  double eta = per_step * (double)(steps - step);
  fprintf(stderr, "%sstep %lld/%lld loss %.6f lr %.3g grad-norm %.3g %.1f examples/s ETA %.0fs%s",
          tty ? "\r" : "", (long long)step, (long long)steps, loss, lr, norm,
          elapsed > 0 ? (double)examples / elapsed : 0.0, eta, tty ? (last ? "\n" : "\033[K") : "\n");
  fflush(stderr);
}

// ---------------------------------------------------------------------------------------
// Interruption: SIGINT or SIGTERM only sets a flag (nothing else is safe in a handler);
// the loop finishes the current step, writes a checkpoint and exits with 130. The handler
// resets itself (SA_RESETHAND), so a second signal ends the process at once.
// Test hooks, so that tests do not race the step loop: KILN_TEST_INTERRUPT_AT_STEP=K raises
// SIGINT during step K; KILN_TEST_AWAIT_SIGNAL_AT_STEP=K pauses during step K, saying so on
// stderr, until a signal arrives from outside (at most a minute).

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) { interrupted = sig; }

static void catch_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

enum { EXIT_INTERRUPTED = 130 };

// ---------------------------------------------------------------------------------------
// The command.

typedef struct Trainer {
  const CliOptions *o;
  IrGraph *g;
  CgProgram p;
  bool compiled;
  TrainData data;
  Optimizer opt;
  const IrNode *loss;
  int n_model_outputs;  // g->outputs before the optimizer pass appended its own
  float *state;  // C oracle: m (and v) of every parameter, one allocation
  Mlm mlm;       // pre-training data (kiln data synth): masking and mismatching per batch
  bool has_mlm;
  bool stopped;  // by a signal, after writing a checkpoint
  FeEvaluator eval;  // --eval-data: the inference program scoring the current weights
  bool has_eval;
} Trainer;

static float *f32_buffer(Trainer *t, const char *name) {
  const IrNode *n = ir_graph_find(t->g, name);
  return n ? t->p.value[n->id] : NULL;
}

// With the compiled update: the state lives in the buffers of its inputs (zeros until a
// checkpoint fills them), and the update's outputs (g->outputs, after the model's own:
// per parameter the new value then the new state, last the gradient norm) are copied back.
static bool trainer_graph_buffers(Trainer *t, Diag *d) {
  Optimizer *o = &t->opt;
  IrGraph *g = t->g;
  PassOptimizer spec = {.sgd = o->kind == OPT_SGD};
  int per = o->kind == OPT_SGD ? 1 : 2;
  int at = g->n_outputs - (o->n * (1 + per) + 1);
  assert(at >= 0);
  o->lr_in = f32_buffer(t, PASS_OPT_LR);
  o->c1_in = o->kind == OPT_ADAMW ? f32_buffer(t, PASS_OPT_C1) : NULL;
  o->c2_in = o->kind == OPT_ADAMW ? f32_buffer(t, PASS_OPT_C2) : NULL;
  for (int k = 0; k < o->n; k++) {
    TrainParam *p = &o->p[k];
    char name[1024];
    for (int which = 0; which < per; which++) {
      snprintf(name, sizeof name, "%s%s", pass_optimizer_state_prefix(&spec, which), p->node->name);
      float *buf = f32_buffer(t, name);
      if (!buf) return diag_error(d, "optimiser state \"%s\" is not in the compiled program (compiler bug)", name);
      memset(buf, 0, (size_t)p->numel * sizeof(float));
      if (which == 0) p->m = buf;
      else p->v = buf;
    }
    p->w_new = t->p.value[g->outputs[at++]->id];
    p->m_new = t->p.value[g->outputs[at++]->id];
    p->v_new = per == 2 ? t->p.value[g->outputs[at++]->id] : NULL;
  }
  o->norm_out = t->p.value[g->outputs[at]->id];
  return true;
}

// Collects the parameters (f32 only) with their gradient buffers and allocates the state.
static bool trainer_params(Trainer *t, Diag *d) {
  IrGraph *g = t->g;
  Optimizer *o = &t->opt;
  o->p = calloc((size_t)g->n_grads + 1, sizeof *o->p);
  int64_t total = 0;
  for (int i = 0; i < g->n_grads; i++) {
    const IrNode *n = g->grads[i].of;
    if (n->op != IR_OP_PARAM) continue;
    if (n->dtype != DT_F32 || g->grads[i].grad->dtype != DT_F32)
      return diag_error(d, "%s: parameter \"%s\" is %s; kiln train supports f32 parameters only",
                        n->where, n->name, dt_name(n->dtype));
    TrainParam *p = &o->p[o->n++];
    p->node = n;
    p->w = t->p.value[n->id];
    p->g = t->p.value[g->grads[i].grad->id];
    p->numel = ir_numel(&n->shape);
    p->decay = pass_optimizer_decays(n->name);
    p->reached = g->grads[i].reached;
    assert(p->w && p->g);
    total += p->numel;
  }
  int per = o->kind == OPT_SGD ? 1 : 2;
  if (o->graph) return trainer_graph_buffers(t, d);
  t->state = calloc((size_t)(total * per) + 1, sizeof(float));
  if (!t->state) return diag_error(d, "out of memory for the optimiser state (%lld values)", (long long)(total * per));
  float *s = t->state;
  for (int k = 0; k < o->n; k++) {
    o->p[k].m = s;
    s += o->p[k].numel;
    if (per == 2) {
      o->p[k].v = s;
      s += o->p[k].numel;
    }
  }
  return true;
}

// --eval-data: scores the current weights, one line on stderr; adds its time to *seconds.
static bool eval_now(Trainer *t, int64_t step, bool tty, double *seconds, Diag *d) {
  double t0 = now_s();
  FeMetrics m;
  if (!fe_eval_bind_values(&t->eval, t->g, t->p.value, d) || !fe_eval_run(&t->eval, &m, d))
    return diag_prefix(d, "evaluating at step %lld: ", (long long)step);
  fprintf(stderr, "%seval step %lld:", tty ? "\r\033[K" : "", (long long)step);
  fe_metrics_print(&m, stderr, true);
  fprintf(stderr, "\n");
  *seconds += now_s() - t0;
  return true;
}

static bool train(Trainer *t, Diag *d) {
  const CliOptions *o = t->o;
  IrGraph *g = t->g;
  const char *loss_name = o->loss ? o->loss : "loss";
  for (int i = 0; i < g->n_losses; i++)
    if (!strcmp(g->losses[i].name, loss_name)) t->loss = g->losses[i].node;
  if (!t->loss || t->loss->dtype != DT_F32 || ir_numel(&t->loss->shape) != 1)
    return diag_error(d, "%s: loss \"%s\" must be an f32 scalar", g->file, loss_name);

  // Compile once: the loss and every gradient, dropout active.
  bool *want = calloc((size_t)g->n_nodes + 1, sizeof *want);
  want[t->loss->id] = true;
  for (int i = 0; i < g->n_grads; i++)  // the parameters too: unreached ones are written out
    want[g->grads[i].grad->id] = want[g->grads[i].of->id] = true;
  if (t->opt.graph)  // the update's outputs follow the model's own
    for (int i = t->n_model_outputs; i < g->n_outputs; i++) want[g->outputs[i]->id] = true;
  CgOptions copt = {.dump_dir = o->dump_llvm, .training = true, .tuning = o->tuning,
                     .no_memplan = cli_pass_disabled(o, "memplan")};
  bool ok = cg_compile(g, want, &copt, &t->p, d);
  free(want);
  if (!ok) return false;
  t->compiled = true;
  FILE *log = o->verbose ? stderr : NULL;
  if (log) fprintf(log, "kiln: compiled %d kernels, %d steps in %.0f ms\n", t->p.n_kernels, t->p.plan.n_steps,
                   t->p.compile_ms);
  if (!trainer_params(t, d)) return false;

  // Weights (from the checkpoint when resuming) and data.
  StFile wf = {0}, df = {0};
  int64_t done = 0;
  const char *wpath = o->resume ? o->resume : o->weights ? o->weights : o->init;
  ok = st_read(wpath, &wf, d) &&
       (o->init ? fe_bind_partial(g, &wf, t->p.value, o->seed, stderr, d)
                : fe_bind_native(g, &wf, IR_OP_PARAM, t->p.value, NULL, log, d)) &&
       (!o->resume || ckpt_read_state(&wf, &t->opt, &done, d)) && st_read(o->data, &df, d) &&
       data_load(g, &df, t->p.value, o->seed, &t->data, d);
  if (ok && !mlm_load(&df, &t->mlm, &t->has_mlm, d) && t->has_mlm) ok = false;  // malformed
  st_free(&wf);
  st_free(&df);
  if (!ok) return false;
  if (o->resume)
    fprintf(stderr, "kiln: resuming from %s at step %lld of %lld\n", o->resume, (long long)done,
            (long long)t->opt.steps);
  if (o->eval_data) {
    if (!fe_eval_open(o, o->eval_data, &t->eval, d)) return diag_prefix(d, "--eval-data: ");
    t->has_eval = true;
  }

  int threads = o->threads ? o->threads : rt_default_threads(o->tuning.threads);
  const char *hook = o->test_interrupt_at_step;
  int64_t interrupt_at = hook ? atoll(hook) : 0;
  hook = o->test_await_signal_at_step;
  int64_t await_at = hook ? atoll(hook) : 0;
  bool tty = isatty(2);
  double t0 = now_s();
  double eval_s = 0;  // time spent evaluating since t0, not training
  if (t->has_eval && !eval_now(t, done, tty, &eval_s, d)) return false;
  char path[4096];
  for (int64_t step = done; step < t->opt.steps; step++) {
    if (step + 1 == interrupt_at) raise(SIGINT);
    if (step + 1 == await_at) {
      fprintf(stderr, "kiln: test hook: awaiting a signal in step %lld\n", (long long)step + 1);
      for (int i = 0; i < 6000 && !interrupted; i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    data_bind_batch(&t->data, step, t->p.value);
    if (t->has_mlm && !mlm_apply(&t->mlm, g, t->p.value, o->seed, step, d))
      return diag_prefix(d, "step %lld: ", (long long)step + 1);
    *t->p.seed = hash2(hash2(o->seed, STREAM_DROPOUT), (uint64_t)step);
    if (t->opt.graph) opt_graph_inputs(&t->opt, step);
    rt_plan_prepare(&t->p.plan, threads);  // re-packs the weights the last update changed
    rt_plan_run(&t->p.plan, threads);
    if (!cg_program_status(&t->p, d)) return diag_prefix(d, "step %lld: ", (long long)step + 1);
    double loss = *(const float *)t->p.value[t->loss->id];
    if (!isfinite(loss)) return diag_error(d, "step %lld: the loss is %g; stopping", (long long)step + 1, loss);
    double lr = opt_lr(&t->opt, step);
    double norm = t->opt.graph ? opt_graph_copy_back(&t->opt) : opt_update(&t->opt, step);
    int64_t here = step + 1 - done;
    progress(step + 1, t->opt.steps, loss, lr, norm, here * t->data.batch, now_s() - t0 - eval_s, here, tty);
    bool last = step + 1 == t->opt.steps;
    if (t->has_eval && (last || (o->eval_every && (step + 1) % o->eval_every == 0)) &&
        !eval_now(t, step + 1, tty, &eval_s, d))
      return false;
    bool ckpt = o->checkpoint_every && ((step + 1) % o->checkpoint_every == 0 || step + 1 == t->opt.steps);
    bool stop = interrupted && step + 1 < t->opt.steps;
    if (ckpt || stop) {
      ckpt_path(o->output, step + 1, path, sizeof path);
      if (!ckpt_write(path, &t->opt, step + 1, true, d)) return false;
      if (log && !stop) fprintf(log, "kiln: checkpoint %s\n", path);
    }
    if (stop) {
      fprintf(stderr, "%skiln: %s after step %lld of %lld; checkpoint written to %s\n"
              "kiln: to continue, run the same command with --resume %s (same --steps, --seed "
              "and --data give the weights of an uninterrupted run)\n", tty ? "\n" : "",
              interrupted == SIGTERM ? "terminated" : "interrupted", (long long)step + 1,
              (long long)t->opt.steps, path, path);
      t->stopped = true;
      return true;
    }
  }
  if (!ckpt_write(o->output, &t->opt, t->opt.steps, false, d)) return false;
  fprintf(stderr, "kiln: trained %lld steps; wrote %d parameters to %s\n", (long long)(t->opt.steps - done),
          t->opt.n, o->output);
  return true;
}

PassOptimizer train_optimizer_spec(const char *kind) {
  return (PassOptimizer){.sgd = kind && !strcmp(kind, "sgd"), .beta1 = 0.9, .beta2 = 0.999,
                         .eps = 1e-6, .weight_decay = 0.01, .momentum = 0.9, .clip = 1.0};
}

bool train_load(const CliOptions *o, const PassOptimizer *spec, IrGraph *g, int *n_outputs, Diag *d) {
  if (!fe_load_model(o->model, o->sets, o->n_sets, g, d)) return false;
  *n_outputs = g->n_outputs;
  PassOptions po = {.loss = o->loss ? o->loss : "loss", .optimizer = spec};
  if (!pass_run_pipeline(g, &po, NULL, o->disabled, o->n_disabled, d)) {
    ir_graph_free(g);
    return false;
  }
  return true;
}

int cmd_train(const CliOptions *o) {
  if ((!o->weights && !o->resume && !o->init) || !o->data || !o->output) {
    fprintf(stderr, "kiln: train needs --weights FILE (or --init W, or --resume CKPT), --data FILE "
                    "and -o FILE (kiln train --help)\n");
    return EXIT_USAGE;
  }
  if (o->init && (o->weights || o->resume)) {  // (--resume's weights replace --weights)
    fprintf(stderr, "kiln: train takes --init W without --weights and --resume\n");
    return EXIT_USAGE;
  }
  OptKind kind = OPT_ADAMW;
  if (o->optimizer && !strcmp(o->optimizer, "sgd")) kind = OPT_SGD;
  else if (o->optimizer && strcmp(o->optimizer, "adamw") != 0) {
    fprintf(stderr, "kiln: --optimizer must be adamw or sgd, not \"%s\"\n", o->optimizer);
    return EXIT_USAGE;
  }
  const char *which = o->optimizer_impl;  // "c": the C oracle (tests)
  Trainer t = {.o = o};
  PassOptimizer spec = train_optimizer_spec(kind == OPT_SGD ? "sgd" : "adamw");
  t.opt = (Optimizer){.kind = kind, .graph = !(which && !strcmp(which, "c")),
                      .lr = o->lr > 0 ? o->lr : kind == OPT_SGD ? 1e-2 : 1e-4,
                      .beta1 = spec.beta1, .beta2 = spec.beta2, .eps = spec.eps,
                      .weight_decay = spec.weight_decay, .momentum = spec.momentum,
                      .clip = spec.clip, .steps = o->steps ? o->steps : 100};
  t.opt.warmup = t.opt.steps / 10;
  catch_signals();
  IrGraph g;
  Diag d = {0};
  if (!train_load(o, t.opt.graph ? &spec : NULL, &g, &t.n_model_outputs, &d)) {
    cli_error(&d);
    return EXIT_USER;
  }
  t.g = &g;
  bool ok = train(&t, &d);
  if (!ok) {
    if (isatty(2)) fprintf(stderr, "\n");
    cli_error(&d);
  }
  data_free(&t.data);
  if (t.has_eval) fe_eval_free(&t.eval);
  if (t.has_mlm) mlm_free(&t.mlm);
  free(t.opt.p);
  free(t.state);
  if (t.compiled) cg_program_free(&t.p);
  ir_graph_free(&g);
  return !ok ? EXIT_USER : t.stopped ? EXIT_INTERRUPTED : 0;
}
