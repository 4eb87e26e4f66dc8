// `kiln eval`: a model's loss and accuracies over a whole data file, with the JIT in
// inference mode. Full batches run on the model as configured; a last partial batch of r
// examples runs on a second compilation with batch=r, so every example counts once.
//
// Metrics, chosen by the model's tensors:
//   logits [B,K] with float labels [B,K] (VQA soft scores): accuracy (argmax of the logits
//     is the argmax of the target) and vqa_accuracy (the target's score at that argmax);
//   logits [B,C] with integer labels [B] (NLVR2): accuracy;
//   prediction_logits [B,T,V] with labels [B,T] (pre-training): mlm_accuracy over labels
//     other than -100, and sentence_image_accuracy from seq_relationship_logits.
// The loss is the mean of the batch losses weighted by their number of examples.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/compile.h"
#include "frontend/bind.h"
#include "frontend/cli.h"

typedef struct EvalAcc {
  int64_t examples;
  double loss_sum;  // sum over batches of loss * batch size
  int64_t n_cls, cls_correct;
  double soft_sum;
  bool soft;        // labels are soft scores
  int64_t mlm_n, mlm_correct, si_n, si_correct;
} EvalAcc;

// One input's examples in the node's dtype (N, ...).
typedef struct EvalInput {
  const IrNode *node;
  char *rows;
  size_t row_bytes;
} EvalInput;

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

// Adds the metrics of one batch (rows [0, b)) to acc.
static void score_batch(const IrGraph *g, void *const *value, int64_t b, EvalAcc *acc) {
  const IrNode *logits = ir_graph_find(g, "logits"), *labels = input_named(g, "labels");
  if (logits && labels && value[logits->id] && value[labels->id] && logits->shape.rank == 2) {
    int64_t K = logits->shape.dim[1];
    bool soft = labels->shape.rank == 2 && labels->shape.dim[1] == K && dt_is_float(labels->dtype);
    bool hard = labels->shape.rank == 1 && !dt_is_float(labels->dtype);
    for (int64_t i = 0; soft && i < b; i++) {
      int64_t guess = argmax(logits->dtype, value[logits->id], (size_t)(i * K), K);
      int64_t best = argmax(labels->dtype, value[labels->id], (size_t)(i * K), K);
      acc->n_cls++;
      acc->cls_correct += guess == best;
      acc->soft_sum += dt_load(labels->dtype, value[labels->id], (size_t)(i * K + guess));
    }
    for (int64_t i = 0; hard && i < b; i++) {
      acc->n_cls++;
      acc->cls_correct += argmax(logits->dtype, value[logits->id], (size_t)(i * K), K) ==
                          (int64_t)dt_load(labels->dtype, value[labels->id], (size_t)i);
    }
    acc->soft |= soft;
  }
  const IrNode *pl = ir_graph_find(g, "prediction_logits");
  if (pl && labels && value[pl->id] && value[labels->id] && pl->shape.rank == 3 && labels->shape.rank == 2) {
    int64_t T = pl->shape.dim[1], V = pl->shape.dim[2];
    for (int64_t i = 0; i < b * T; i++) {
      int64_t want = (int64_t)dt_load(labels->dtype, value[labels->id], (size_t)i);
      if (want == -100) continue;
      acc->mlm_n++;
      acc->mlm_correct += argmax(pl->dtype, value[pl->id], (size_t)(i * V), V) == want;
    }
  }
  const IrNode *sl = ir_graph_find(g, "seq_relationship_logits"), *sil = input_named(g, "sentence_image_labels");
  if (sl && sil && value[sl->id] && value[sil->id] && sl->shape.rank == 2) {
    int64_t C = sl->shape.dim[1];
    for (int64_t i = 0; i < b; i++) {
      acc->si_n++;
      acc->si_correct += argmax(sl->dtype, value[sl->id], (size_t)(i * C), C) ==
                         (int64_t)dt_load(sil->dtype, value[sil->id], (size_t)i);
    }
  }
}

// Converts every input the program reads from the data file (checked by name, trailing
// shape and number of examples). *n_examples is set from the first.
static bool load_inputs(const IrGraph *g, const StFile *f, void *const *value, EvalInput *in, int *n_in,
                        int64_t *n_examples, Diag *d) {
  *n_in = 0;
  *n_examples = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_INPUT || !value[i]) continue;
    const StTensor *t = st_find(f, n->name);
    if (!t) return diag_error(d, "%s: input \"%s\" is missing", f->path, n->name);
    IrShape per = {.rank = n->shape.rank - 1};
    for (int k = 1; k < n->shape.rank; k++) per.dim[k - 1] = n->shape.dim[k];
    bool ok = n->shape.rank >= 1 && t->rank == n->shape.rank;
    for (int k = 1; ok && k < t->rank; k++) ok = t->shape[k] == n->shape.dim[k];
    if (!ok) {
      char want[160], got[160];
      IrShape ts = {.rank = t->rank};
      for (int k = 0; k < t->rank && k < IR_MAX_RANK; k++) ts.dim[k] = t->shape[k];
      return diag_error(d, "%s: tensor \"%s\" has shape %s; expected (examples)+%s", f->path, t->name,
                        ir_shape_str(&ts, got, sizeof got), ir_shape_str(&per, want, sizeof want));
    }
    if (*n_examples >= 0 && t->shape[0] != *n_examples)
      return diag_error(d, "%s: tensor \"%s\" has %lld examples but \"%s\" has %lld", f->path, t->name,
                        (long long)t->shape[0], in[0].node->name, (long long)*n_examples);
    *n_examples = t->shape[0];
    EvalInput *e = &in[(*n_in)++];
    e->node = n;
    e->row_bytes = (size_t)ir_numel(&per) * dt_size(n->dtype);
    size_t count = (size_t)st_numel(t);
    e->rows = malloc(count * dt_size(n->dtype) + 1);
    if (!e->rows) return diag_error(d, "%s: out of memory loading \"%s\"", f->path, t->name);
    if (!dt_convert(t->dtype, t->data, n->dtype, e->rows, count, t->name, d)) return diag_prefix(d, "%s: ", f->path);
  }
  if (*n_in == 0) return diag_error(d, "%s: the model reads no inputs", g->file);
  return true;
}

// Runs examples [first, first + count) of the data through g in batches of g's batch size
// (count is a multiple of it); *n_examples is set to the data's number of examples.
static bool eval_graph(const CliOptions *o, const IrGraph *g, const StFile *wf, const StFile *df, int64_t first,
                       int64_t count, int64_t *n_examples, EvalAcc *acc, Diag *d) {
  const char *loss_name = o->loss ? o->loss : "loss";
  const IrNode *loss = NULL;
  for (int i = 0; i < g->n_losses; i++)
    if (!strcmp(g->losses[i].name, loss_name)) loss = g->losses[i].node;
  if (!loss) return diag_error(d, "%s: the model has no loss \"%s\"", g->file, loss_name);
  const IrNode *ids = input_named(g, "input_ids");
  int64_t batch = ids && ids->shape.rank >= 1 ? ids->shape.dim[0] : 1;
  for (int i = 0; i < g->n_config; i++)
    if (!strcmp(g->config[i].name, "batch")) batch = (int64_t)g->config[i].value;
  bool *want = calloc((size_t)g->n_nodes + 1, sizeof(bool));
  want[loss->id] = true;
  for (int i = 0; i < g->n_outputs; i++) want[g->outputs[i]->id] = true;
  CgOptions copt = {.no_memplan = cli_pass_disabled(o, "memplan")};
  CgProgram p;
  bool ok = cg_compile(g, want, &copt, &p, d);
  free(want);
  if (!ok) return false;
  EvalInput *in = calloc((size_t)g->n_nodes + 1, sizeof *in);
  int n_in = 0;
  ok = fe_bind_native(g, wf, IR_OP_PARAM, p.value, NULL, o->verbose ? stderr : NULL, d) &&
       load_inputs(g, df, p.value, in, &n_in, n_examples, d);
  for (int i = 0; ok && i < n_in; i++)
    if (in[i].node->shape.dim[0] != batch)
      ok = diag_error(d, "%s: input \"%s\" has shape (%lld, ...), not (batch, ...): kiln eval needs a leading "
                      "batch dimension", g->file, in[i].node->name, (long long)in[i].node->shape.dim[0]);
  if (ok && count > 0) {
    int threads = o->threads ? o->threads : rt_default_threads();
    rt_plan_prepare(&p.plan, threads);
    for (int64_t s = first; ok && s < first + count; s += batch) {
      for (int i = 0; i < n_in; i++)
        memcpy(p.value[in[i].node->id], in[i].rows + (size_t)s * in[i].row_bytes, (size_t)batch * in[i].row_bytes);
      rt_plan_run(&p.plan, threads);
      ok = cg_program_status(&p, d);
      if (!ok) break;
      acc->loss_sum += dt_load(loss->dtype, p.value[loss->id], 0) * (double)batch;
      acc->examples += batch;
      score_batch(g, p.value, batch, acc);
    }
  }
  for (int i = 0; i < n_in; i++) free(in[i].rows);
  free(in);
  cg_program_free(&p);
  return ok;
}

int cmd_eval(const CliOptions *o) {
  if (!o->weights || !o->data) {
    fprintf(stderr, "kiln: eval needs --weights FILE and --data FILE (kiln eval --help)\n");
    return EXIT_USAGE;
  }
  IrGraph g;
  if (!cli_load(o, NULL, &g)) return EXIT_USER;
  Diag d = {0};
  StFile wf = {0}, df = {0};
  EvalAcc acc = {0};
  int64_t n = 0, batch = -1;
  for (int i = 0; i < g.n_config; i++)
    if (!strcmp(g.config[i].name, "batch")) batch = (int64_t)g.config[i].value;
  bool ok = st_read(o->weights, &wf, &d) && st_read(o->data, &df, &d);
  if (ok && batch < 1) ok = diag_error(&d, "%s: kiln eval needs a config entry \"batch\"", g.file);
  // The number of examples: the leading dimension of the data's first model input (every
  // input is checked against it when loaded).
  for (int k = 0; ok && k < df.n && n == 0; k++) {
    const IrNode *in = input_named(&g, df.tensors[k].name);
    if (in && df.tensors[k].rank >= 1) n = df.tensors[k].shape[0];
  }
  if (ok && n == 0) ok = diag_error(&d, "%s: no examples of the model's inputs", o->data);
  if (ok && n >= batch) ok = eval_graph(o, &g, &wf, &df, 0, n / batch * batch, &n, &acc, &d);
  ir_graph_free(&g);
  if (ok && n % batch) {  // the rest on the model with batch = n % batch
    CliOptions *o2 = malloc(sizeof *o2);
    *o2 = *o;
    if (o2->n_sets == CLI_MAX_SETS) o2->n_sets--;
    char value[32];
    snprintf(value, sizeof value, "%lld", (long long)(n % batch));
    FeSet *s = &o2->sets[o2->n_sets++];
    snprintf(s->name, sizeof s->name, "batch");
    s->value = value;
    IrGraph g2;
    ok = cli_load(o2, NULL, &g2);
    if (ok) {
      ok = eval_graph(o2, &g2, &wf, &df, n / batch * batch, n % batch, &n, &acc, &d);
      ir_graph_free(&g2);
    } else {
      d.set = true;  // cli_load printed why
      d.msg[0] = 0;
    }
    free(o2);
  }
  if (ok) {
    printf("examples: %lld\n", (long long)acc.examples);
    printf("loss: %.6f\n", acc.loss_sum / (double)acc.examples);
    if (acc.n_cls) printf("accuracy: %.6f\n", (double)acc.cls_correct / (double)acc.n_cls);
    if (acc.n_cls && acc.soft) printf("vqa_accuracy: %.6f\n", acc.soft_sum / (double)acc.n_cls);
    if (acc.mlm_n) printf("mlm_accuracy: %.6f\nmasked_tokens: %lld\n", (double)acc.mlm_correct / (double)acc.mlm_n,
                          (long long)acc.mlm_n);
    if (acc.si_n) printf("sentence_image_accuracy: %.6f\n", (double)acc.si_correct / (double)acc.si_n);
  } else if (d.msg[0]) {
    cli_error(&d);
  }
  st_free(&wf);
  st_free(&df);
  return ok ? 0 : EXIT_USER;
}
