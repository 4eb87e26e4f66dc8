// Evaluating a model on a data file (see evaluate.h): compiled once, scored for any number
// of weight sets. Full batches run on the model as configured; a last partial batch of r
// examples runs on a second compilation with batch=r, so every example counts once.
//
// Metrics, chosen by the model's tensors:
//   logits [B,K] with float labels [B,K] (VQA soft scores): accuracy (argmax of the logits
//     is the argmax of the target) and vqa_accuracy (the target's score at that argmax);
//   logits [B,C] with integer labels [B] (NLVR2): accuracy;
//   prediction_logits [B,T,V] with labels [B,T] (pre-training): mlm_accuracy over labels
//     other than -100, and sentence_image_accuracy from seq_relationship_logits.
// The loss is the mean of the batch losses weighted by their number of examples.
#include "api/evaluate.h"

#include <stdlib.h>
#include <string.h>

#include "api/bind.h"
#include "passes/passes.h"

static const IrNode *input_named(const IrGraph *g, const char *name) {
  const IrNode *n = ir_graph_find(g, name);
  return n && n->op == IR_OP_INPUT ? n : NULL;
}

static int64_t argmax(DType dt, const void *p, size_t off, int64_t n) {
  int64_t best = 0;
  double bv = dt_load(dt, p, off);
  for (int64_t k = 1; k < n; k++) {
    double v = dt_load(dt, p, off + (size_t)k);
    if (v > bv) bv = v, best = k;
  }
  return best;
}

// Adds the metrics of one batch (rows [0, b)) to m.
static void score_batch(const IrGraph *g, void *const *value, int64_t b, FeMetrics *m) {
  const IrNode *logits = ir_graph_find(g, "logits"), *labels = input_named(g, "labels");
  if (logits && labels && value[logits->id] && value[labels->id] && logits->shape.rank == 2) {
    int64_t K = logits->shape.dim[1];
    bool soft = labels->shape.rank == 2 && labels->shape.dim[1] == K && dt_is_float(labels->dtype);
    bool hard = labels->shape.rank == 1 && !dt_is_float(labels->dtype);
    for (int64_t i = 0; soft && i < b; i++) {
      int64_t guess = argmax(logits->dtype, value[logits->id], (size_t)(i * K), K);
      int64_t best = argmax(labels->dtype, value[labels->id], (size_t)(i * K), K);
      m->n_cls++;
      m->cls_correct += guess == best;
      m->soft_sum += dt_load(labels->dtype, value[labels->id], (size_t)(i * K + guess));
    }
    for (int64_t i = 0; hard && i < b; i++) {
      m->n_cls++;
      m->cls_correct += argmax(logits->dtype, value[logits->id], (size_t)(i * K), K) ==
                        (int64_t)dt_load(labels->dtype, value[labels->id], (size_t)i);
    }
    m->soft |= soft;
  }
  const IrNode *pl = ir_graph_find(g, "prediction_logits");
  if (pl && labels && value[pl->id] && value[labels->id] && pl->shape.rank == 3 && labels->shape.rank == 2) {
    int64_t T = pl->shape.dim[1], V = pl->shape.dim[2];
    for (int64_t i = 0; i < b * T; i++) {
      int64_t want = (int64_t)dt_load(labels->dtype, value[labels->id], (size_t)i);
      if (want == -100) continue;
      m->mlm_n++;
      m->mlm_correct += argmax(pl->dtype, value[pl->id], (size_t)(i * V), V) == want;
    }
  }
  const IrNode *sl = ir_graph_find(g, "seq_relationship_logits"), *sil = input_named(g, "sentence_image_labels");
  if (sl && sil && value[sl->id] && value[sil->id] && sl->shape.rank == 2) {
    int64_t C = sl->shape.dim[1];
    for (int64_t i = 0; i < b; i++) {
      m->si_n++;
      m->si_correct += argmax(sl->dtype, value[sl->id], (size_t)(i * C), C) ==
                       (int64_t)dt_load(sil->dtype, value[sil->id], (size_t)i);
    }
  }
}

// Loads the model (with batch=`batch` when > 0) for inference.
static bool load_model(const CliOptions *o, int64_t batch, IrGraph *g, Diag *d) {
  FeSet sets[CLI_MAX_SETS + 1];
  int n = o->n_sets;
  memcpy(sets, o->sets, (size_t)n * sizeof *sets);
  char value[32];
  if (batch > 0) {
    snprintf(value, sizeof value, "%lld", (long long)batch);
    FeSet *s = &sets[n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "batch");
    s->value = value;
  }
  if (!fe_load_model(o->model, sets, n, g, d)) return false;
  PassOptions po = {0};
  if (!pass_run_pipeline(g, &po, NULL, o->disabled, o->n_disabled, d)) {
    ir_graph_free(g);
    return false;
  }
  return true;
}

// The inputs of part pt from the data file; those of `share` (the full-batch part) are
// borrowed by name when it has them (the same rows, another graph's nodes).
static bool load_inputs(FeEvalPart *pt, const StFile *f, const FeEvalPart *share, int64_t *n_examples, Diag *d) {
  const IrGraph *g = &pt->g;
  pt->in = calloc((size_t)g->n_nodes + 1, sizeof *pt->in);
  if (!share) {
    pt->owns_rows = true;
    return fe_load_examples(g, f, pt->p.value, &pt->batch, NULL, pt->in, &pt->n_in, n_examples, d);
  }
  for (int k = 0; k < share->n_in; k++) {
    const IrNode *n = ir_graph_find(g, share->in[k].node->name);
    if (!n || !pt->p.value[n->id]) continue;
    pt->in[pt->n_in++] = (FeExamples){.node = n, .rows = share->in[k].rows, .row_bytes = share->in[k].row_bytes};
  }
  return true;
}

// Compiles part pt (its graph loaded) for its loss and outputs.
static bool compile_part(const CliOptions *o, FeEvalPart *pt, Diag *d) {
  const char *loss_name = o->loss ? o->loss : "loss";
  const IrGraph *g = &pt->g;
  for (int i = 0; i < g->n_losses; i++)
    if (!strcmp(g->losses[i].name, loss_name)) pt->loss = g->losses[i].node;
  if (!pt->loss) return diag_error(d, "%s: the model has no loss \"%s\"", g->file, loss_name);
  bool *want = calloc((size_t)g->n_nodes + 1, sizeof(bool));
  want[pt->loss->id] = true;
  for (int i = 0; i < g->n_outputs; i++) want[g->outputs[i]->id] = true;
  CgOptions copt = {.no_memplan = cli_pass_disabled(o, "memplan"), .tuning = o->tuning};
  bool ok = cg_compile(g, want, &copt, &pt->p, d);
  free(want);
  pt->compiled = ok;
  return ok;
}

bool fe_eval_open(const CliOptions *o, const char *data_path, FeEvaluator *e, Diag *d) {
  memset(e, 0, sizeof *e);
  e->threads = o->threads ? o->threads : rt_default_threads(o->tuning.threads);
  FeEvalPart *full = &e->part[0];
  if (!load_model(o, 0, &full->g, d)) return false;
  e->n_parts = 1;
  full->batch = (int64_t)ir_graph_config(&full->g, "batch", -1);
  if (full->batch < 1) return diag_error(d, "%s: evaluation needs a config entry \"batch\"", full->g.file);
  StFile df = {0};
  if (!st_read(data_path, &df, d)) return false;
  // The number of examples: the leading dimension of the data's first model input (every
  // input is checked against it when loaded).
  int64_t n = 0;
  for (int k = 0; k < df.n && n == 0; k++) {
    const IrNode *in = input_named(&full->g, df.tensors[k].name);
    if (in && df.tensors[k].rank >= 1) n = df.tensors[k].shape[0];
  }
  bool ok = n > 0 || diag_error(d, "%s: no examples of the model's inputs", data_path);
  int64_t seen = -1;
  if (ok && n >= full->batch) {
    full->count = n / full->batch * full->batch;
    ok = compile_part(o, full, d) && load_inputs(full, &df, NULL, &seen, d);
  }
  if (ok && n % full->batch) {  // the rest on the model with batch = n % batch
    FeEvalPart *rest = &e->part[1];
    rest->batch = n % full->batch;
    rest->first = n / full->batch * full->batch;
    rest->count = rest->batch;
    ok = load_model(o, rest->batch, &rest->g, d);
    if (ok) {
      e->n_parts = 2;
      ok = compile_part(o, rest, d) && load_inputs(rest, &df, full->compiled ? full : NULL, &seen, d);
    }
  }
  st_free(&df);
  return ok;
}

static bool part_active(const FeEvalPart *pt) { return pt->compiled && pt->count > 0; }

bool fe_eval_bind_file(FeEvaluator *e, const StFile *w, FILE *log, Diag *d) {
  for (int k = 0; k < e->n_parts; k++) {
    FeEvalPart *pt = &e->part[k];
    if (part_active(pt) && !fe_bind_native(&pt->g, w, IR_OP_PARAM, pt->p.value, NULL, k == 0 ? log : NULL, d))
      return false;
  }
  return true;
}

bool fe_eval_bind_values(FeEvaluator *e, const IrGraph *g, void *const *value, Diag *d) {
  for (int k = 0; k < e->n_parts; k++) {
    FeEvalPart *pt = &e->part[k];
    for (int i = 0; part_active(pt) && i < pt->g.n_nodes; i++) {
      const IrNode *n = pt->g.nodes[i];
      if (n->op != IR_OP_PARAM || !pt->p.value[i]) continue;
      const IrNode *s = ir_graph_find(g, n->name);
      if (!s || s->op != IR_OP_PARAM || s->dtype != n->dtype || !ir_shape_eq(&s->shape, &n->shape) || !value[s->id])
        return diag_error(d, "%s: parameter \"%s\" is not in the trained program with the same shape and dtype",
                          pt->g.file, n->name);
      memcpy(pt->p.value[i], value[s->id], (size_t)ir_numel(&n->shape) * dt_size(n->dtype));
    }
  }
  return true;
}

bool fe_eval_run(FeEvaluator *e, FeMetrics *m, Diag *d) {
  memset(m, 0, sizeof *m);
  for (int k = 0; k < e->n_parts; k++) {
    FeEvalPart *pt = &e->part[k];
    if (!part_active(pt)) continue;
    rt_plan_prepare(&pt->p.plan, e->threads);  // packs the weights just bound
    for (int64_t s = pt->first; s < pt->first + pt->count; s += pt->batch) {
      for (int i = 0; i < pt->n_in; i++)
        memcpy(pt->p.value[pt->in[i].node->id], pt->in[i].rows + (size_t)s * pt->in[i].row_bytes,
               (size_t)pt->batch * pt->in[i].row_bytes);
      rt_plan_run(&pt->p.plan, e->threads);
      if (!cg_program_status(&pt->p, d)) return false;
      m->loss_sum += dt_load(pt->loss->dtype, pt->p.value[pt->loss->id], 0) * (double)pt->batch;
      m->examples += pt->batch;
      score_batch(&pt->g, pt->p.value, pt->batch, m);
    }
  }
  return true;
}

// One metric: "name: value\n" or, on one line, " name value".
static void metric(FILE *f, bool one_line, const char *name, const char *fmt, double v) {
  fprintf(f, one_line ? " %s " : "%s: ", name);
  fprintf(f, fmt, v);
  if (!one_line) fputc('\n', f);
}

void fe_metrics_print(const FeMetrics *m, FILE *f, bool one_line) {
  metric(f, one_line, "examples", "%.0f", (double)m->examples);
  metric(f, one_line, "loss", "%.6f", m->examples ? m->loss_sum / (double)m->examples : 0.0);
  if (m->n_cls) metric(f, one_line, "accuracy", "%.6f", (double)m->cls_correct / (double)m->n_cls);
  if (m->n_cls && m->soft) metric(f, one_line, "vqa_accuracy", "%.6f", m->soft_sum / (double)m->n_cls);
  if (m->mlm_n) {
    metric(f, one_line, "mlm_accuracy", "%.6f", (double)m->mlm_correct / (double)m->mlm_n);
    metric(f, one_line, "masked_tokens", "%.0f", (double)m->mlm_n);
  }
  if (m->si_n) metric(f, one_line, "sentence_image_accuracy", "%.6f", (double)m->si_correct / (double)m->si_n);
}

void fe_eval_free(FeEvaluator *e) {
  for (int k = 0; k < 2; k++) {
    FeEvalPart *pt = &e->part[k];
    if (pt->owns_rows) fe_examples_free(pt->in, pt->n_in);
    free(pt->in);
    if (pt->compiled) cg_program_free(&pt->p);
  }
  for (int k = 0; k < e->n_parts; k++) ir_graph_free(&e->part[k].g);
  memset(e, 0, sizeof *e);
}
