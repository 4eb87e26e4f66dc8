// Evaluating a model on a data file (see evaluate.h): compiled once, scored for any number
// of weight sets. Full batches run on the model as configured; a last partial batch of r
// examples runs on a second compilation with batch=r, so every example counts once.
//
// Metrics, chosen by the model's tensors:
//   logits [B,K] with float labels [B,K] (VQA soft scores): accuracy (argmax of the logits
//     is the argmax of the target) and vqa_accuracy (the target's score at that argmax);
//   logits [B,C] with integer labels [B] (NLVR2): accuracy;
//   prediction_logits [B,T,V] with labels [B,T] (pre-training): mlm_accuracy over labels
//     other than -100, and sentence_image_accuracy from seq_relationship_logits;
//   logits [B,S,R] with float labels [B,S,R] (Flickr30K region-to-phrase): recall_at_1 over
//     the slots whose label row has mass (the phrases): the region with the largest logit
//     is one the label gives weight to.
// The loss is the mean of the batch losses weighted by their number of examples.
#include "api/evaluate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int64_t argmax(const StTensor *t, size_t off, int64_t n) {
  int64_t best = 0;
  double bv = dt_load(t->dtype, t->data, off);
  for (int64_t k = 1; k < n; k++) {
    double v = dt_load(t->dtype, t->data, off + (size_t)k);
    if (v > bv) bv = v, best = k;
  }
  return best;
}

// The model's tensor `name` after a run, if it has one (an output, or an input it reads).
static bool view(KilnModel *m, const char *name, StTensor *t) {
  Diag ignored = {0};
  return kiln_tensor(m, name, t, &ignored);
}

// Adds the metrics of one batch (rows [0, b)) to s.
static void score_batch(KilnModel *m, int64_t b, FeMetrics *s) {
  StTensor logits, labels, pl, sl, sil;
  bool has_labels = view(m, "labels", &labels);
  if (view(m, "logits", &logits) && has_labels && logits.rank == 2) {
    int64_t K = logits.shape[1];
    bool soft = labels.rank == 2 && labels.shape[1] == K && dt_is_float(labels.dtype);
    bool hard = labels.rank == 1 && !dt_is_float(labels.dtype);
    for (int64_t i = 0; soft && i < b; i++) {
      int64_t guess = argmax(&logits, (size_t)(i * K), K);
      int64_t best = argmax(&labels, (size_t)(i * K), K);
      s->n_cls++;
      s->cls_correct += guess == best;
      s->soft_sum += dt_load(labels.dtype, labels.data, (size_t)(i * K + guess));
    }
    for (int64_t i = 0; hard && i < b; i++) {
      s->n_cls++;
      s->cls_correct += argmax(&logits, (size_t)(i * K), K) == (int64_t)dt_load(labels.dtype, labels.data, (size_t)i);
    }
    s->soft |= soft;
  }
  if (view(m, "logits", &logits) && has_labels && logits.rank == 3 && labels.rank == 3 &&
      dt_is_float(labels.dtype) && labels.shape[1] == logits.shape[1] && labels.shape[2] == logits.shape[2]) {
    int64_t R = logits.shape[2];
    for (int64_t i = 0; i < b * logits.shape[1]; i++) {
      double mass = 0;
      for (int64_t r = 0; r < R; r++) mass += dt_load(labels.dtype, labels.data, (size_t)(i * R + r));
      if (mass <= 0) continue;
      s->phrases++;
      s->phrase_hits += dt_load(labels.dtype, labels.data, (size_t)(i * R + argmax(&logits, (size_t)(i * R), R))) > 0;
    }
  }
  if (view(m, "prediction_logits", &pl) && has_labels && pl.rank == 3 && labels.rank == 2) {
    int64_t T = pl.shape[1], V = pl.shape[2];
    for (int64_t i = 0; i < b * T; i++) {
      int64_t want = (int64_t)dt_load(labels.dtype, labels.data, (size_t)i);
      if (want == -100) continue;
      s->mlm_n++;
      s->mlm_correct += argmax(&pl, (size_t)(i * V), V) == want;
    }
  }
  if (view(m, "seq_relationship_logits", &sl) && view(m, "sentence_image_labels", &sil) && sl.rank == 2) {
    int64_t C = sl.shape[1];
    for (int64_t i = 0; i < b; i++) {
      s->si_n++;
      s->si_correct += argmax(&sl, (size_t)(i * C), C) == (int64_t)dt_load(sil.dtype, sil.data, (size_t)i);
    }
  }
}

// Opens part pt's model for inference, with batch=`batch` when > 0.
static bool open_part(const char *path, const KilnOptions *ko, const char *loss, int64_t batch, FeEvalPart *pt,
                      Diag *d) {
  KilnOptions o = *ko;
  KilnSet *sets = calloc((size_t)ko->n_sets + 1, sizeof *sets);
  if (!sets) return diag_error(d, "out of memory");
  memcpy(sets, ko->sets, (size_t)ko->n_sets * sizeof *sets);
  char value[32];
  snprintf(value, sizeof value, "%lld", (long long)batch);
  if (batch > 0) sets[o.n_sets++] = (KilnSet){"batch", value};
  o.sets = sets;
  o.backend = KILN_BACKEND_JIT;
  o.grad_loss = NULL;
  o.training = false;
  o.log = batch > 0 ? NULL : ko->log;  // notes (extra tensors in the weights) once
  bool ok = kiln_model_open(path, &o, &pt->m, d);
  free(sets);
  pt->loss = loss;
  return ok;
}

// Compiles an opened part for its outputs and loss.
static bool compile_part(FeEvalPart *pt, Diag *d) {
  if (!kiln_find(pt->m, KILN_OUTPUT, pt->loss, &(KilnTensorInfo){0}))
    return diag_error(d, "%s: the model has no loss \"%s\"", kiln_model_file(pt->m), pt->loss);
  return kiln_compile(pt->m, d);
}

bool fe_eval_open(const char *path, const KilnOptions *ko, const char *loss, const char *data_path, FeEvaluator *e,
                  Diag *d) {
  memset(e, 0, sizeof *e);
  FeEvalPart *full = &e->part[0];
  e->n_parts = 1;
  if (!open_part(path, ko, loss, 0, full, d)) return false;
  full->batch = (int64_t)kiln_config(full->m, "batch", -1);
  if (full->batch < 1) return diag_error(d, "%s: evaluation needs a config entry \"batch\"", kiln_model_file(full->m));
  StFile df = {0};
  if (!st_read(data_path, &df, d)) return false;
  // The number of examples: the leading dimension of the data's first model input (every
  // input is checked against it when loaded).
  int64_t n = 0;
  KilnTensorInfo info;
  for (int k = 0; k < df.n && n == 0; k++)
    if (kiln_find(full->m, KILN_INPUT, df.tensors[k].name, &info) && df.tensors[k].rank >= 1) n = df.tensors[k].shape[0];
  bool ok = (n > 0 || diag_error(d, "%s: no examples of the model's inputs", data_path)) && compile_part(full, d) &&
            kiln_data_open(full->m, &df, NULL, &e->data, d);
  if (ok && n >= full->batch) full->count = n / full->batch * full->batch;
  if (ok && n % full->batch) {  // the rest on the model with batch = n % batch
    FeEvalPart *rest = &e->part[1];
    rest->batch = n % full->batch;
    rest->first = n / full->batch * full->batch;
    rest->count = rest->batch;
    e->n_parts = 2;
    ok = open_part(path, ko, loss, rest->batch, rest, d) && compile_part(rest, d);
  }
  st_free(&df);
  return ok;
}

static bool part_active(const FeEvalPart *pt) { return pt->m && pt->count > 0; }

bool fe_eval_bind_file(FeEvaluator *e, const StFile *w, Diag *d) {
  for (int k = 0; k < e->n_parts; k++)
    if (part_active(&e->part[k]) && !kiln_bind_params(e->part[k].m, w, d)) return false;
  return true;
}

bool fe_eval_bind_model(FeEvaluator *e, KilnModel *src, Diag *d) {
  for (int k = 0; k < e->n_parts; k++)
    if (part_active(&e->part[k]) && !kiln_copy_params(e->part[k].m, src, d)) return false;
  return true;
}

// Sums the metrics over the processes (every count is exact in a double below 2^53).
static bool sum_metrics(DistComm *c, FeMetrics *s, Diag *d) {
  double v[] = {(double)s->examples, s->loss_sum, (double)s->n_cls, (double)s->cls_correct, s->soft_sum,
                s->soft, (double)s->mlm_n, (double)s->mlm_correct, (double)s->si_n, (double)s->si_correct,
                (double)s->phrases, (double)s->phrase_hits};
  if (!dist_sum_f64(c, v, (int)(sizeof v / sizeof v[0]), d)) return diag_prefix(d, "summing the metrics: ");
  *s = (FeMetrics){(int64_t)v[0], v[1], (int64_t)v[2], (int64_t)v[3], v[4], v[5] > 0,
                   (int64_t)v[6], (int64_t)v[7], (int64_t)v[8], (int64_t)v[9], (int64_t)v[10], (int64_t)v[11]};
  return true;
}

bool fe_eval_run(FeEvaluator *e, FeMetrics *s, Diag *d) {
  memset(s, 0, sizeof *s);
  int64_t j = 0;  // the batch's index over both parts: process r runs those with j % N == r
  int rank = dist_rank(e->comm), size = dist_size(e->comm);
  for (int k = 0; k < e->n_parts; k++) {
    FeEvalPart *pt = &e->part[k];
    if (!part_active(pt)) continue;
    for (int64_t first = pt->first; first < pt->first + pt->count; first += pt->batch) {
      if (j++ % size != rank) continue;
      StTensor loss;
      if (!kiln_data_bind_range(pt->m, e->data, first, d) || !kiln_run(pt->m, 0, d) ||
          !kiln_tensor(pt->m, pt->loss, &loss, d))
        return false;
      s->loss_sum += dt_load(loss.dtype, loss.data, 0) * (double)pt->batch;
      s->examples += pt->batch;
      score_batch(pt->m, pt->batch, s);
    }
  }
  return !e->comm || sum_metrics(e->comm, s, d);
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
  if (m->phrases) {
    metric(f, one_line, "recall_at_1", "%.6f", (double)m->phrase_hits / (double)m->phrases);
    metric(f, one_line, "phrases", "%.0f", (double)m->phrases);
  }
}

void fe_eval_free(FeEvaluator *e) {
  for (int k = 0; k < 2; k++) kiln_model_free(e->part[k].m);
  kiln_data_free(e->data);
  memset(e, 0, sizeof *e);
}
