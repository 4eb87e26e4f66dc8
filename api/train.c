// The trainer (api/kiln.h, KilnTrainer): a model compiled with its loss, gradients and the
// optimiser's update (passes/optimizer.c) into one JIT program; per step the batch of a
// seeded epoch permutation is bound (pre-training data masked and mismatched per step) and
// the program run. The update writes the new parameters and state over the old ones
// (codegen/memory.c plans it: every update comes after its parameter's last reader); an
// update the plan could not place so is copied back here (a parameter the loss does not
// reach has its inputs as outputs: nothing to copy). The optimizer pass records the updates
// in g->train; nothing here depends on output order.
// Checkpoints hold weights, optimiser state and the step counters.
// Data parallel (KilnTrainOptions.comm, docs/distributed.md): each process binds its share
// of the step's global batch, and the plan runs in two phases: the model's steps (forward
// and backward), starting each gradient's all-reduce as soon as the step that finishes it
// has run, then, once every sum is in and averaged, the optimiser's steps, which read the
// averaged gradients: so clipping sees the global norm and every process the same update.
// Accumulation (KilnTrainOptions.accumulate = K) runs the first phase K times on K shares
// of the step's rows, averaging the gradients, before the sums and the update.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/bind.h"
#include "api/model_impl.h"
#include "data/mlm.h"
#include "dist/dist.h"
#include "runtime/program.h"
#include "runtime/timing.h"

// Random streams: the IR's counter-based mix (ir_rng_key_of, the one dropout uses), so
// every draw is a function of its key alone.
static uint64_t hash2(uint64_t a, uint64_t b) { return ir_rng_key_of(a, b); }
enum { STREAM_SHUFFLE = 1, STREAM_DROPOUT = 2 };

typedef struct Reduced {  // a gradient buffer averaged over the processes
  float *grad;
  int64_t numel, at;  // at: its place in KilnTrainer.sum (in the order the backward finishes them)
  int last;           // the plan step that finishes it (INT_MAX: none of phase 0)
} Reduced;

typedef struct Update {  // the compiled update of one parameter: its outputs
  const float *value, *m, *v;
} Update;

struct KilnTrainer {
  KilnModel *m;
  KilnTrainOptions o;
  PassOptimizer spec;
  double lr;
  int64_t steps, warmup;
  const IrNode *loss;
  KilnParamView *p;  // per parameter, in g->grads order
  Update *upd;       // compiled update: where each parameter's new value and state are
  int n;
  float *lr_in, *c1_in, *c2_in;
  const float *norm_out;
  float *state;      // external_update: m (and v) of every parameter, one allocation
  // Data: examples in a seeded permutation per epoch.
  KilnData *data;
  int64_t n_examples, batch, perm_epoch;
  int64_t *perm, *ex;
  Mlm mlm;
  bool has_mlm;
  // Data parallel (comm: NULL when alone): rank of size; phase per plan step (1: the
  // optimiser's); the distinct gradient buffers in the order their sums start, each summed
  // into sum[] after its last writer (step s finishes red[ready[s] .. ready[s + 1])), in
  // buckets of about KilnTrainOptions.bucket_mb: bucket b is red[bucket[b] .. bucket[b + 1]),
  // copied into stage[] (in sum's layout) to be summed as one message once all are finished.
  DistComm *comm;
  int rank, size;
  unsigned char *phase;
  Reduced *red;
  int n_red;
  int *ready;  // [plan steps + 1]
  int *bucket, n_buckets, started;  // started: buckets whose sums are started this step
  float *stage;  // NULL with one gradient a bucket (summed from its own buffer)
  float *sum;
  float *acc;  // accumulation: the gradients' running sums (in sum's layout)
  int64_t accumulate;
  int64_t n_sum;
  double wait_s;  // the last step's wait for the sums
  // Global loss denominators (passes/loss_denominator.c; with phases only): per entry of
  // g->denominators, the step's count of labels over processes and micro-batches.
  double *count;
  // Accumulation with denominators: the batch's inputs (every input but the trainer's own,
  // at PASS_OPT_WHERE) of each micro-batch, kept by set_denominators when it binds and masks
  // them to count the labels, put back by run_phases: one bind (and MLM masking) a step.
  const IrNode **batch_in;
  int n_batch_in;
  size_t batch_bytes;
  char *batches;  // [accumulate][batch_bytes]
};

static double lr_at(const KilnTrainer *t, int64_t step) {
  if (step < t->warmup) return t->lr * (double)(step + 1) / (double)t->warmup;
  return t->lr * (double)(t->steps - step) / (double)(t->steps - t->warmup);
}

static float *f32_value(KilnModel *m, const IrNode *n) { return n ? m->p.value[n->id] : NULL; }

// The parameters with their gradient buffers, and where their state and update live.
static bool collect_params(KilnTrainer *t, Diag *d) {
  KilnModel *m = t->m;
  IrGraph *g = &m->g;
  t->p = calloc((size_t)g->n_grads + 1, sizeof *t->p);
  t->upd = calloc((size_t)g->n_grads + 1, sizeof *t->upd);
  if (!t->p || !t->upd) return diag_error(d, "out of memory");
  int per = t->spec.sgd ? 1 : 2;
  int64_t total = 0;
  for (int i = 0; i < g->n_grads; i++) {
    const IrNode *n = g->grads[i].of;
    if (n->op != IR_OP_PARAM) continue;
    if (n->dtype != DT_F32 || g->grads[i].grad->dtype != DT_F32)
      return diag_error(d, "%s: parameter \"%s\" is %s; kiln train supports f32 parameters only", n->where,
                        n->name, dt_name(n->dtype));
    KilnParamView *p = &t->p[t->n++];
    *p = (KilnParamView){.name = n->name, .numel = ir_numel(&n->shape), .value = m->p.value[n->id],
                         .grad = m->p.value[g->grads[i].grad->id], .decay = pass_optimizer_decays(n->name),
                         .reached = g->grads[i].reached};
    if (!p->value || !p->grad) return diag_error(d, "parameter \"%s\" has no buffer (compiler bug)", n->name);
    total += p->numel;
  }
  if (t->o.external_update) {
    t->state = calloc((size_t)(total * per) + 1, sizeof(float));
    if (!t->state) return diag_error(d, "out of memory for the optimiser state (%lld values)", (long long)(total * per));
    float *s = t->state;
    for (int k = 0; k < t->n; k++) {
      t->p[k].m = s, s += t->p[k].numel;
      if (per == 2) t->p[k].v = s, s += t->p[k].numel;
    }
    return true;
  }
  const IrTrainStep *ts = g->train;
  if (!ts || ts->n_updates != t->n) return diag_error(d, "the optimiser's update is not in the program (compiler bug)");
  t->lr_in = f32_value(m, ts->lr);
  t->c1_in = f32_value(m, ts->c1);
  t->c2_in = f32_value(m, ts->c2);
  t->norm_out = m->p.value[g->outputs[ts->norm]->id];
  for (int k = 0; k < t->n; k++) {
    const IrUpdate *u = &ts->updates[k];
    KilnParamView *p = &t->p[k];
    if (u->param != g->grads[u->grad].of || strcmp(u->param->name, p->name) != 0)
      return diag_error(d, "the optimiser's table disagrees with the gradients (compiler bug)");
    p->m = f32_value(m, u->state[0]);
    p->v = f32_value(m, u->state[1]);
    if (!p->m || (per == 2 && !p->v)) return diag_error(d, "optimiser state of \"%s\" has no buffer (compiler bug)", p->name);
    if (m->p.inst.poison) {  // zeros until a checkpoint fills them; fresh buffers are zeros
      memset(p->m, 0, (size_t)p->numel * sizeof(float));
      if (p->v) memset(p->v, 0, (size_t)p->numel * sizeof(float));
    }
    m->bound[u->state[0]->id] = true;
    if (u->state[1]) m->bound[u->state[1]->id] = true;
    t->upd[k] = (Update){m->p.value[g->outputs[u->new_value]->id], m->p.value[g->outputs[u->new_state[0]]->id],
                         u->new_state[1] >= 0 ? m->p.value[g->outputs[u->new_state[1]]->id] : NULL};
  }
  m->bound[ts->lr->id] = true;
  if (ts->c1) m->bound[ts->c1->id] = m->bound[ts->c2->id] = true;
  return true;
}

// ---------------------------------------------------------------------------------------
// Data parallel: the two phases and the gradients' all-reduce.

static bool is_opt(const IrNode *n) {
  while (ir_op_is_view(n->op)) n = n->in[0];
  return !strcmp(n->where, PASS_OPT_WHERE) && n->op != IR_OP_INPUT;
}

static int cmp_last(const void *a, const void *b) {
  const Reduced *x = a, *y = b;
  return (x->last > y->last) - (x->last < y->last);
}

// The sums' layout in the order the backward finishes the gradients, and the buckets: runs
// of consecutive gradients of at least bucket_mb MiB (the last may be smaller; 0: one
// gradient each, summed from its own buffer without a copy).
static bool plan_buckets(KilnTrainer *t, Diag *d) {
  int64_t at = 0, limit = (int64_t)(t->o.bucket_mb * 1048576.0 / sizeof(float)), open = 0;
  t->bucket = calloc((size_t)t->n_red + 2, sizeof *t->bucket);
  if (!t->bucket) return diag_error(d, "out of memory");
  for (int j = 0; j < t->n_red; j++) {
    t->red[j].at = at;
    at += t->red[j].numel;
    open += t->red[j].numel;
    if (open >= limit || j == t->n_red - 1) {
      t->bucket[++t->n_buckets] = j + 1;
      open = 0;
    }
  }
  if (t->comm && limit > 0 && !(t->stage = malloc((size_t)at * sizeof *t->stage + 64)))
    return diag_error(d, "out of memory for the gradients' buckets (%lld values)", (long long)at);
  return true;
}

// Phase 1: the steps of the nodes the optimizer pass added; phase 0 the others. Running
// phase 0 first changes no result only if no model step reads an optimiser value and the
// optimiser reads nothing of the model's but gradients, parameters and inputs (the buffers
// the memory plan pins or never shares): checked here. Constants (`full`, which CSE may
// share between the two) are computed in both phases, each time where the plan has them.
enum { IN_PHASE_0 = 1, IN_PHASE_1 = 2 };  // phase[s]: a mask of the phases step s runs in

static bool is_source(const IrNode *n) { return ir_ops[n->op].flags & IR_FLAG_SOURCE; }

static bool plan_phases(KilnTrainer *t, Diag *d) {
  KilnModel *m = t->m;
  const IrGraph *g = &m->g;
  const CgProgram *p = &m->p;
  int n_steps = p->plan.n_steps;
  if (t->o.external_update)
    return diag_error(d, "data-parallel training and accumulation need the compiled update");
  t->phase = calloc((size_t)n_steps + 1, 1);
  t->ready = calloc((size_t)n_steps + 2, sizeof *t->ready);
  t->red = calloc((size_t)t->n + 1, sizeof *t->red);
  bool *grad = calloc((size_t)g->n_nodes + 1, sizeof *grad);
  if (!t->phase || !t->ready || !t->red || !grad) return free(grad), diag_error(d, "out of memory");
  for (int i = 0; i < g->n_grads; i++) grad[g->grads[i].grad->id] = true;
  bool ok = true;
  for (int s = 0; s < n_steps && ok; s++) {
    const IrNode *n = g->nodes[p->prog.steps[s].node];
    bool opt = is_opt(n);
    t->phase[s] = is_source(n) ? IN_PHASE_0 | IN_PHASE_1 : opt ? IN_PHASE_1 : IN_PHASE_0;
    for (int k = 0; k < n->n_in && ok; k++) {
      const IrNode *x = n->in[k];
      while (ir_op_is_view(x->op) && !grad[x->id]) x = x->in[0];
      bool fine = is_source(x) || (opt ? is_opt(x) || grad[x->id] || x->op == IR_OP_INPUT || x->op == IR_OP_PARAM
                                       : !is_opt(x));
      if (!fine)
        ok = diag_error(d, "%s: step %d (\"%s\") reads %s value \"%s\"; the program cannot run in two phases "
                        "(compiler bug)", g->file, s, n->name, opt ? "the model's" : "an optimiser", x->name);
    }
  }
  free(grad);
  if (!ok) return false;
  // The distinct gradient buffers of the parameters the loss reaches, by their last writer.
  int64_t total = 0;
  for (int k = 0; k < t->n; k++) {
    const KilnParamView *pv = &t->p[k];
    bool seen = !pv->reached;
    for (int j = 0; j < t->n_red && !seen; j++) seen = t->red[j].grad == pv->grad;
    if (seen) continue;
    Reduced *r = &t->red[t->n_red++];
    *r = (Reduced){.grad = (float *)pv->grad, .numel = pv->numel, .at = total, .last = INT_MAX};
    total += pv->numel;
    for (int s = 0; s < n_steps; s++)
      if (t->phase[s] == IN_PHASE_0 && !p->plan.steps[s].once && p->value[p->prog.steps[s].node] == pv->grad) r->last = s;
  }
  qsort(t->red, (size_t)t->n_red, sizeof *t->red, cmp_last);
  for (int s = 0, j = 0; s <= n_steps; s++) {  // ready[s]: those finished before step s
    while (j < t->n_red && t->red[j].last < s) j++;
    t->ready[s] = j;
  }
  t->n_sum = total;
  if (!plan_buckets(t, d)) return false;
  t->sum = t->comm ? malloc((size_t)total * sizeof *t->sum + 64) : NULL;
  t->acc = t->accumulate > 1 ? malloc((size_t)total * sizeof *t->acc + 64) : NULL;
  if ((t->comm && !t->sum) || (t->accumulate > 1 && !t->acc))
    return diag_error(d, "out of memory for the gradients' sums (%lld values)", (long long)total);
  return !t->comm || dist_sum_reserve(t->comm, t->n_red + 16, d);
}

// Starts the sums of the buckets whose gradients are all among red[0 .. finished), in order.
static bool start_buckets(KilnTrainer *t, int finished, Diag *d) {
  for (; t->started < t->n_buckets && t->bucket[t->started + 1] <= finished; t->started++) {
    const Reduced *first = &t->red[t->bucket[t->started]], *last = &t->red[t->bucket[t->started + 1] - 1];
    const float *send = first->grad;
    if (t->stage) {
      for (const Reduced *r = first; r <= last; r++)
        memcpy(t->stage + r->at, r->grad, (size_t)r->numel * sizeof(float));
      send = t->stage + first->at;
    }
    if (!dist_sum_start(t->comm, send, t->sum + first->at, last->at + last->numel - first->at, d)) return false;
  }
  return true;
}

// After plan step s (thread 0 of the run): start the sums of the buckets it completed.
static void on_step_done(void *ctx, int s) {
  KilnTrainer *t = ctx;
  if (t->o.no_overlap) return;
  Diag d = {0};
  if (!start_buckets(t, t->ready[s + 1], &d)) return;  // reduce_grads starts it again and reports it
  dist_sum_poll(t->comm);
}

// Between the phases: the remaining sums, then every gradient becomes the average.
static bool reduce_grads(KilnTrainer *t, Diag *d) {
  if (!start_buckets(t, t->n_red, d)) return false;
  double t0 = rt_now_ms();
  if (!dist_sum_wait(t->comm, d)) return diag_prefix(d, "averaging the gradients: ");
  t->wait_s = (rt_now_ms() - t0) / 1e3;
  float inv = 1.0f / (float)t->size;
  for (int j = 0; j < t->n_red; j++) {
    const Reduced *r = &t->red[j];
    for (int64_t i = 0; i < r->numel; i++) r->grad[i] = t->sum[r->at + i] * inv;
  }
  return true;
}

// The loss denominators' inputs are set per step (set_denominators), not by the data.
static bool open_denominators(KilnTrainer *t, Diag *d) {
  KilnModel *m = t->m;
  const IrGraph *g = &m->g;
  t->count = calloc((size_t)g->n_denominators + 1, sizeof *t->count);
  if (!t->count) return diag_error(d, "out of memory");
  for (int k = 0; k < g->n_denominators; k++) {
    const IrLossDenominator *x = &g->denominators[k];
    if (!m->p.value[x->input->id] || !m->p.value[x->labels->id])
      return diag_error(d, "%s: the loss denominator \"%s\" has no buffer (compiler bug)", g->file, x->input->name);
    m->bound[x->input->id] = true;
  }
  if (t->accumulate < 2 || !g->n_denominators) return true;
  t->batch_in = calloc((size_t)g->n_nodes + 1, sizeof *t->batch_in);
  if (!t->batch_in) return diag_error(d, "out of memory");
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_INPUT || !m->p.value[n->id] || strcmp(n->where, PASS_OPT_WHERE) == 0) continue;
    t->batch_in[t->n_batch_in++] = n;
    t->batch_bytes += (size_t)ir_numel(&n->shape) * dt_size(n->dtype);
  }
  t->batches = malloc(t->batch_bytes * (size_t)t->accumulate + 1);
  return t->batches ? true : diag_error(d, "out of memory");
}

// Copies the bound batch's inputs into (save) or back from micro-batch j's copy.
static void keep_batch(KilnTrainer *t, int64_t j, bool save) {
  char *at = t->batches + (size_t)j * t->batch_bytes;
  for (int i = 0; i < t->n_batch_in; i++) {
    const IrNode *n = t->batch_in[i];
    size_t bytes = (size_t)ir_numel(&n->shape) * dt_size(n->dtype);
    void *buf = t->m->p.value[n->id];
    memcpy(save ? (void *)at : buf, save ? buf : (const void *)at, bytes);
    at += bytes;
  }
}

// Every process's parameters and state, bit for bit (--check-replicas).
static bool same_replicas(KilnTrainer *t, int64_t step, Diag *d) {
  uint64_t h = 1469598103934665603ull;
  for (int k = 0; k < t->n; k++) {
    const float *bufs[3] = {t->p[k].value, t->p[k].m, t->p[k].v};
    for (int b = 0; b < 3; b++)
      for (int64_t i = 0; bufs[b] && i < t->p[k].numel; i++) {
        uint32_t x;
        memcpy(&x, &bufs[b][i], 4);
        h = (h ^ x) * 1099511628211ull;
      }
  }
  bool same;
  if (!dist_same_u64(t->comm, h, &same, d)) return false;
  if (!same)
    return diag_error(d, "after step %lld the processes' parameters differ (--check-replicas)", (long long)step + 1);
  return true;
}

// The trainer's model, opened but not compiled: its optimiser, its passes (the update, the
// loss denominators) and its outputs (the loss, the gradients, the update's), every
// parameter kept. kiln_trainer_open compiles it; kiln_trainer_memory plans it.
static bool open_model(KilnTrainer *t, const char *path, const KilnOptions *opt, Diag *d) {
  const KilnTrainOptions *to = &t->o;
  bool sgd = to->optimizer && !strcmp(to->optimizer, "sgd");
  if (to->optimizer && !sgd && strcmp(to->optimizer, "adamw") != 0)
    return diag_error(d, "the optimizer must be adamw or sgd, not \"%s\"", to->optimizer);
  t->spec = (PassOptimizer){.sgd = sgd, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-6, .weight_decay = 0.01,
                            .momentum = 0.9, .clip = to->clip > 0 ? to->clip : 1.0};
  t->lr = to->lr > 0 ? to->lr : sgd ? 1e-2 : 1e-4;
  t->steps = to->steps;
  t->warmup = t->steps / 10;
  t->perm_epoch = -1;
  KilnOptions mo = *opt;
  mo.backend = KILN_BACKEND_JIT;
  mo.grad_loss = to->loss ? to->loss : "loss";
  mo.training = true;
  PassOptions po = {.optimizer = to->external_update ? NULL : &t->spec,
                    .loss_denominators = (to->comm && dist_size(to->comm) > 1) || to->accumulate > 1};
  if (!kiln_model_open_with(path, &mo, &po, &t->m, d)) return false;
  KilnModel *m = t->m;
  const IrGraph *g = &m->g;
  t->loss = m->out[0];  // select_all: the loss first
  if (t->loss->dtype != DT_F32 || ir_numel(&t->loss->shape) != 1)
    return diag_error(d, "%s: loss \"%s\" must be an f32 scalar", g->file, mo.grad_loss);
  m->want_params = true;  // unreached parameters are written out too
  if (g->train)           // the update's outputs follow the model's own
    for (int i = g->train->n_model_outputs; i < g->n_outputs; i++) {
      m->out[m->n_out] = g->outputs[i];
      m->out_name[m->n_out++] = g->outputs[i]->name;
    }
  return true;
}

bool kiln_trainer_open(const char *path, const KilnOptions *opt, const KilnTrainOptions *to, KilnTrainer **out,
                       Diag *d) {
  *out = NULL;
  KilnTrainer *t = calloc(1, sizeof *t);
  if (!t) return diag_error(d, "out of memory");
  t->o = *to;
  bool ok = open_model(t, path, opt, d) && kiln_compile(t->m, d) && collect_params(t, d);
  if (ok) {
    t->comm = to->comm && dist_size(to->comm) > 1 ? to->comm : NULL;
    t->rank = dist_rank(t->comm);
    t->size = dist_size(t->comm);
    t->accumulate = to->accumulate > 1 ? to->accumulate : 1;
    if (t->comm || t->accumulate > 1) ok = plan_phases(t, d) && open_denominators(t, d);
  }
  if (!ok) {
    kiln_trainer_free(t);
    return false;
  }
  *out = t;
  return true;
}

bool kiln_trainer_memory(const char *path, const KilnOptions *opt, const KilnTrainOptions *to, KilnMemory *out,
                         Diag *d) {
  KilnTrainer *t = calloc(1, sizeof *t);
  if (!t) return diag_error(d, "out of memory");
  t->o = *to;
  bool ok = open_model(t, path, opt, d) && kiln_memory_plan(t->m, out, d);
  const IrGraph *g = ok ? &t->m->g : NULL;
  bool *seen = ok ? calloc((size_t)g->n_nodes + 1, sizeof *seen) : NULL;
  if (ok && !seen) ok = diag_error(d, "out of memory");
  for (int i = 0; ok && i < g->n_grads; i++) {  // distinct buffers (collect_params' grad views)
    int r = cg_memory_root(g, g->grads[i].grad->id);
    if (g->grads[i].of->op != IR_OP_PARAM || seen[r]) continue;
    seen[r] = true;
    out->grads += (uint64_t)ir_numel(&g->nodes[r]->shape) * dt_size(g->nodes[r]->dtype);
  }
  for (int k = 0; ok && g->train && k < g->train->n_updates; k++)
    for (int j = 0; j < 2; j++) {
      const IrNode *s = g->train->updates[k].state[j];
      if (s) out->state += (uint64_t)ir_numel(&s->shape) * dt_size(s->dtype);
    }
  if (ok) out->inputs -= out->state;  // the state inputs are counted apart
  free(seen);
  kiln_trainer_free(t);
  return ok;
}

void kiln_trainer_free(KilnTrainer *t) {
  if (!t) return;
  kiln_model_free(t->m);
  kiln_data_free(t->data);
  if (t->has_mlm) mlm_free(&t->mlm);
  free(t->p);
  free(t->upd);
  free(t->state);
  free(t->perm);
  free(t->ex);
  free(t->phase);
  free(t->red);
  free(t->ready);
  free(t->bucket);
  free(t->stage);
  free(t->sum);
  free(t->acc);
  free(t->count);
  free(t->batch_in);
  free(t->batches);
  free(t);
}

KilnModel *kiln_trainer_model(KilnTrainer *t) { return t->m; }
int64_t kiln_trainer_batch(const KilnTrainer *t) { return t->batch; }
int64_t kiln_trainer_steps(const KilnTrainer *t) { return t->steps; }
double kiln_trainer_lr(const KilnTrainer *t, int64_t step) { return lr_at(t, step); }
int kiln_trainer_n_params(const KilnTrainer *t) { return t->n; }

KilnParamView kiln_trainer_param(KilnTrainer *t, int i) {
  t->m->prepared = false;  // the caller may change it: pack again
  return t->p[i];
}

bool kiln_trainer_init_from(KilnTrainer *t, const StFile *f, uint64_t seed, FILE *notes, Diag *d) {
  KilnModel *m = t->m;
  if (!fe_bind_partial(&m->g, f, m->p.value, seed, notes, d)) return false;
  for (int k = 0; k < m->n_params; k++) m->bound[m->params[k]->id] = true;
  m->prepared = false;
  return true;
}

// ---------------------------------------------------------------------------------------
// Checkpoints: the parameters by name, the state ("adam.m.<name>", "adam.v.<name>" or
// "sgd.m.<name>"), "train.step" (steps done) and "train.steps" (the schedule's length).

static char *state_name(const KilnTrainer *t, int which, const char *param) {
  const char *pre = pass_optimizer_state_prefix(&t->spec, which);
  char *s = malloc(strlen(pre) + strlen(param) + 1);
  if (s) strcat(strcpy(s, pre), param);
  return s;
}

static StTensor f32_tensor(char *name, const KilnParamView *p, void *data, const IrNode *n) {
  StTensor x = {.name = name, .dtype = DT_F32, .rank = n->shape.rank, .data = data,
                .nbytes = (size_t)p->numel * sizeof(float)};
  for (int i = 0; i < n->shape.rank; i++) x.shape[i] = n->shape.dim[i];
  return x;
}

bool kiln_trainer_save(KilnTrainer *t, const char *path, int64_t done, bool with_state, Diag *d) {
  int n_state = t->spec.sgd ? 1 : 2, n = 0;
  StTensor *ts = calloc((size_t)t->n * 3 + 2, sizeof *ts);
  if (!ts) return diag_error(d, "out of memory");
  for (int k = 0; k < t->n; k++)
    ts[n++] = f32_tensor((char *)t->p[k].name, &t->p[k], t->p[k].value, ir_graph_find(&t->m->g, t->p[k].name));
  int64_t counters[2] = {done, t->steps};
  bool ok = true;
  if (with_state) {
    for (int which = 0; which < n_state; which++)
      for (int k = 0; k < t->n; k++) {
        char *name = state_name(t, which, t->p[k].name);
        ok &= name != NULL;
        ts[n++] = f32_tensor(name, &t->p[k], which == 0 ? t->p[k].m : t->p[k].v, ir_graph_find(&t->m->g, t->p[k].name));
      }
    ts[n++] = (StTensor){.name = "train.step", .dtype = DT_I64, .nbytes = 8, .data = &counters[0]};
    ts[n++] = (StTensor){.name = "train.steps", .dtype = DT_I64, .nbytes = 8, .data = &counters[1]};
  }
  ok = ok ? st_write(path, ts, n, d) : diag_error(d, "out of memory");
  if (with_state)
    for (int i = t->n; i < t->n * (1 + n_state); i++) free(ts[i].name);
  free(ts);
  return ok;
}

void kiln_checkpoint_path(const char *out, int64_t step, char *buf, size_t size) {
  size_t n = strlen(out), e = strlen(".safetensors");
  bool has = n > e && !strcmp(out + n - e, ".safetensors");
  snprintf(buf, size, "%.*s.step-%lld.safetensors", (int)(has ? n - e : n), out, (long long)step);
}

// Tensor x of f (read whole, or opened by st_open and read now) converted to dtype dt at
// dst, in x's own shape: the caller has checked its element count.
static bool load_as(const StFile *f, const StTensor *x, DType dt, void *dst, Diag *d) {
  RtTensor want = {.name = x->name, .dtype = dt, .rank = x->rank};
  for (int i = 0; i < x->rank; i++) want.shape[i] = x->shape[i];
  return rt_tensor_convert(&want, f, x, dst, d);
}

static bool counter(const StFile *f, const char *name, int64_t *out, Diag *d) {
  const StTensor *x = st_find(f, name);
  if (!x) return diag_error(d, "%s: \"%s\" is missing: not a kiln train checkpoint", f->path, name);
  if (st_numel(x) != 1 || dt_is_float(x->dtype)) return diag_error(d, "%s: \"%s\" must be a single integer", f->path, name);
  return load_as(f, x, DT_I64, out, d);
}

bool kiln_trainer_resume(KilnTrainer *t, const StFile *f, int64_t *done, Diag *d) {
  int64_t steps;
  if (!kiln_bind_params(t->m, f, d) || !counter(f, "train.step", done, d) || !counter(f, "train.steps", &steps, d))
    return false;
  if (steps != t->steps)
    return diag_error(d, "%s: the checkpoint is of a run of %lld steps, not %lld (the learning-rate "
                      "schedule depends on it): pass --steps %lld", f->path, (long long)steps,
                      (long long)t->steps, (long long)steps);
  if (*done < 0 || *done > steps)
    return diag_error(d, "%s: train.step %lld is outside [0, %lld]", f->path, (long long)*done, (long long)steps);
  for (int which = 0; which < (t->spec.sgd ? 1 : 2); which++)
    for (int k = 0; k < t->n; k++) {
      const KilnParamView *p = &t->p[k];
      char *name = state_name(t, which, p->name);
      if (!name) return diag_error(d, "out of memory");
      const StTensor *x = st_find(f, name);
      bool ok = x && st_numel(x) == p->numel;
      if (!x)
        diag_error(d, "%s: optimiser state \"%s\" is missing (a checkpoint of another optimiser?)", f->path, name);
      else if (!ok)
        diag_error(d, "%s: \"%s\" has %lld values, not %lld", f->path, name, (long long)st_numel(x),
                   (long long)p->numel);
      else
        ok = load_as(f, x, DT_F32, which == 0 ? p->m : p->v, d);
      free(name);
      if (!ok) return false;
    }
  return true;
}

// ---------------------------------------------------------------------------------------
// Data and steps.

bool kiln_trainer_data(KilnTrainer *t, const StFile *f, Diag *d) {
  if (!kiln_data_open(t->m, f, PASS_OPT_WHERE, &t->data, d)) return false;
  t->n_examples = kiln_data_examples(t->data);
  t->batch = (int64_t)kiln_config(t->m, "batch", -1);
  if (t->batch < 1) {  // no config entry: the inputs' leading dimension
    KilnTensorInfo in = kiln_info(t->m, KILN_INPUT, 0);
    t->batch = in.rank ? in.shape[0] : 1;
  }
  int64_t global = t->batch * t->size * t->accumulate;
  if (t->n_examples < global)
    return diag_error(d, "%s: %lld examples, fewer than one batch (%lld)", f->path, (long long)t->n_examples,
                      (long long)global);
  t->perm = malloc((size_t)t->n_examples * sizeof *t->perm);
  t->ex = malloc((size_t)t->batch * sizeof *t->ex);
  if (!t->perm || !t->ex) return diag_error(d, "out of memory");
  if (!mlm_load(f, &t->mlm, &t->has_mlm, d) && t->has_mlm) return false;  // malformed
  return true;
}

// The example at position k of the stream: epoch k / N, in that epoch's seeded
// permutation (Fisher-Yates keyed by (seed, epoch)).
static int64_t example_at(KilnTrainer *t, int64_t k) {
  int64_t n = t->n_examples, epoch = k / n;
  if (epoch != t->perm_epoch) {
    uint64_t key = hash2(hash2(t->o.seed, STREAM_SHUFFLE), (uint64_t)epoch);
    for (int64_t i = 0; i < n; i++) t->perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)(hash2(key, (uint64_t)i) % (uint64_t)(i + 1));
      int64_t x = t->perm[i];
      t->perm[i] = t->perm[j];
      t->perm[j] = x;
    }
    t->perm_epoch = epoch;
  }
  return t->perm[k % n];
}

// Binds the rows first .. first + batch of step's global batch (data, pre-training masks).
static bool bind_rows(KilnTrainer *t, int64_t step, int64_t first, Diag *d) {
  KilnModel *m = t->m;
  int64_t global = t->batch * t->size * t->accumulate;
  for (int64_t b = 0; t->data && b < t->batch; b++) t->ex[b] = example_at(t, step * global + first + b);
  if (t->data && !kiln_data_bind(m, t->data, t->ex, d)) return false;
  return !t->has_mlm || mlm_apply(&t->mlm, &m->g, m->p.value, t->o.seed, step, first, d);
}

// Before step `step`'s first micro-batch: each cross_entropy's denominator, the step's
// labels (after masking) counted over the micro-batches and processes, over their number,
// so that averaging the shares' losses and gradients gives the whole batch's. Leaves the
// last micro-batch bound, and with accumulation keeps each (t->batches).
static bool set_denominators(KilnTrainer *t, int64_t step, Diag *d) {
  KilnModel *m = t->m;
  const IrGraph *g = &m->g;
  int n = g->n_denominators;
  for (int k = 0; k < n; k++) t->count[k] = 0;
  for (int64_t j = 0; j < t->accumulate; j++) {
    if (!bind_rows(t, step, (j * t->size + t->rank) * t->batch, d)) return false;
    for (int k = 0; k < n; k++) {
      const IrLossDenominator *x = &g->denominators[k];
      const void *labels = m->p.value[x->labels->id];
      for (int64_t i = 0, e = ir_numel(&x->labels->shape); i < e; i++)
        t->count[k] += dt_load(x->labels->dtype, labels, (size_t)i) != (double)x->ignore_index;
    }
    if (t->batches) keep_batch(t, j, true);
  }
  if (t->comm && n && !dist_sum_f64(t->comm, t->count, n, d)) return diag_prefix(d, "summing the label counts: ");
  for (int k = 0; k < n; k++)  // every label ignored: the sums are 0, any positive value does
    *(float *)m->p.value[g->denominators[k].input->id] =
        (float)(fmax(t->count[k], 1.0) / (double)(t->size * t->accumulate));
  return true;
}

// The first phase `accumulate` times (micro-batch j of process r: rows (j * size + r) * batch
// ..), the gradients averaged over them and (data parallel) over the processes; *loss: the
// mean of the losses. Then the optimiser's phase.
static bool run_phases(KilnTrainer *t, int64_t step, uint64_t seed, double *loss, Diag *d) {
  KilnModel *m = t->m;
  *loss = 0;
  bool bound = m->g.n_denominators && t->accumulate == 1;  // by set_denominators
  if (m->g.n_denominators && !set_denominators(t, step, d)) return false;
  for (int64_t j = 0; j < t->accumulate; j++) {
    if (t->batches) keep_batch(t, j, false);  // bound and masked by set_denominators
    else if (!bound && !bind_rows(t, step, (j * t->size + t->rank) * t->batch, d)) return false;
    t->started = 0;  // the sums overlap the backward only without accumulation
    RtStepHook after = t->comm && t->accumulate == 1 ? on_step_done : NULL;
    uint64_t share = (uint64_t)(j * t->size + t->rank);  // dropout: the masks of these rows of the step
    if (!kiln_run_phase(m, seed, &(KilnRunPhase){t->phase, 0, after, t, share}, d)) return false;
    *loss += *(const float *)m->p.value[t->loss->id];
    for (int k = 0; k < t->n_red && t->accumulate > 1; k++) {
      const Reduced *r = &t->red[k];
      float *a = t->acc + r->at;
      for (int64_t i = 0; i < r->numel; i++) a[i] = j ? a[i] + r->grad[i] : r->grad[i];
    }
  }
  if (t->accumulate > 1) {
    float inv = 1.0f / (float)t->accumulate;
    for (int k = 0; k < t->n_red; k++)
      for (int64_t i = 0; i < t->red[k].numel; i++) t->red[k].grad[i] = t->acc[t->red[k].at + i] * inv;
  }
  *loss /= (double)t->accumulate;
  if (t->comm) {
    if (!reduce_grads(t, d) || !dist_sum_f64(t->comm, loss, 1, d)) return false;
    *loss /= (double)t->size;
  }
  return kiln_run_phase(m, seed, &(KilnRunPhase){t->phase, 1, NULL, NULL, 0}, d);
}

static void copy_back(float *to, const float *from, size_t bytes) {
  if (to != from) memcpy(to, from, bytes);
}

bool kiln_trainer_step(KilnTrainer *t, int64_t step, KilnStepResult *r, Diag *d) {
  KilnModel *m = t->m;
  *r = (KilnStepResult){.lr = lr_at(t, step)};
  if (!t->o.external_update) {
    double s = (double)(step + 1);
    *t->lr_in = (float)r->lr;
    if (t->c1_in) *t->c1_in = (float)(1.0 - pow(t->spec.beta1, s));
    if (t->c2_in) *t->c2_in = (float)(1.0 - pow(t->spec.beta2, s));
  }
  m->prepared = false;  // the last update changed the weights: pack them again
  // Masks are keyed by the element's position in the step's global batch (run_phases'
  // share): N processes x B draw the masks of 1 x N·B.
  uint64_t seed = hash2(hash2(t->o.seed, STREAM_DROPOUT), (uint64_t)step);
  if (!t->phase) {
    if (!bind_rows(t, step, 0, d) || !kiln_run(m, seed, d)) return false;
    r->loss = *(const float *)m->p.value[t->loss->id];
  } else {
    if (!run_phases(t, step, seed, &r->loss, d)) return false;
    r->reduce_wait_s = t->wait_s;
    r->reduce_bytes = t->comm ? (double)t->n_sum * sizeof(float) : 0;
    r->reduce_buckets = t->comm ? t->n_buckets : 0;
  }
  if (!isfinite(r->loss)) return diag_error(d, "the loss is %g; stopping", r->loss);
  if (t->o.external_update) return true;
  for (int k = 0; k < t->n; k++) {  // copy-back of the updates not written in place
    const KilnParamView *p = &t->p[k];
    size_t bytes = (size_t)p->numel * sizeof(float);
    copy_back(p->value, t->upd[k].value, bytes);
    copy_back(p->m, t->upd[k].m, bytes);
    if (p->v) copy_back(p->v, t->upd[k].v, bytes);
  }
  r->grad_norm = *t->norm_out;
  return !t->comm || !t->o.check_replicas || same_replicas(t, step, d);
}
