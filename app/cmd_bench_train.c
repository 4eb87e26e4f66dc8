// `kiln bench MODEL --train`: times whole training steps (forward, backward and the
// compiled optimiser update, then the copy-back of parameters and state and the re-packing
// of changed weights) on fixed inputs, and prints `compile_ms: X` and `median_ms: X` like
// the inference bench.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/compile.h"
#include "api/bind.h"
#include "api/train.h"
#include "runtime/timing.h"

// One pair of the copy-back: the updated tensor's buffer into the one the next step reads.
typedef struct Copy {
  void *dst;
  const void *src;
  size_t bytes;
} Copy;

// Inputs: integers 0 (valid ids and labels), floats 1 (full masks); the optimiser's state
// zeros and its scalars those of step 1 (lr 1e-4 for the timing: the values do not matter).
static void fill_inputs(const IrGraph *g, void *const *value, const PassOptimizer *spec) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_INPUT || !value[i]) continue;
    bool opt = !strcmp(n->where, PASS_OPT_WHERE);
    double v = opt ? 0.0 : n->dtype == DT_F32 ? 1.0 : 0.0;
    if (!strcmp(n->name, PASS_OPT_LR)) v = 1e-4;
    if (!strcmp(n->name, PASS_OPT_C1)) v = 1.0 - spec->beta1;
    if (!strcmp(n->name, PASS_OPT_C2)) v = 1.0 - spec->beta2;
    size_t count = (size_t)ir_numel(&n->shape);
    for (size_t k = 0; k < count; k++) dt_store(n->dtype, value[i], k, v);
  }
}

// The copy-back list (see pass_optimizer for the order of the update's outputs).
static int copy_list(const IrGraph *g, void *const *value, const size_t *bytes,
                     const PassOptimizer *spec, int first_output, Copy *out) {
  int n = 0, at = first_output, per = spec->sgd ? 1 : 2;
  for (int i = 0; i < g->n_grads; i++) {
    const IrNode *p = g->grads[i].of;
    if (p->op != IR_OP_PARAM) continue;
    out[n++] = (Copy){value[p->id], value[g->outputs[at]->id], bytes[p->id]};
    at++;
    for (int w = 0; w < per; w++, at++) {
      char name[1024];
      snprintf(name, sizeof name, "%s%s", pass_optimizer_state_prefix(spec, w), p->name);
      const IrNode *s = ir_graph_find(g, name);
      out[n++] = (Copy){value[s->id], value[g->outputs[at]->id], bytes[s->id]};
    }
  }
  return n;
}

int cmd_bench_train(const CliOptions *o) {
  if (o->inputs) {
    fprintf(stderr, "kiln: bench --train runs on fixed inputs; --inputs does not apply\n");
    return EXIT_USAGE;
  }
  PassOptimizer spec = train_optimizer_spec(o->optimizer);
  IrGraph g;
  int n_model_outputs = 0;
  Diag d = {0};
  if (!train_load(o, &spec, &g, &n_model_outputs, &d)) {
    cli_error(&d);
    return EXIT_USER;
  }
  bool *want = calloc((size_t)g.n_nodes + 1, sizeof(bool));
  for (int i = 0; i < g.n_losses; i++) want[g.losses[i].node->id] = true;
  for (int i = n_model_outputs; i < g.n_outputs; i++) want[g.outputs[i]->id] = true;
  CgOptions copt = {.dump_dir = o->dump_llvm, .training = true, .tuning = o->tuning,
                    .no_memplan = cli_pass_disabled(o, "memplan")};
  CgProgram p;
  StFile wf = {0};
  bool ok = cg_compile(&g, want, &copt, &p, &d);
  free(want);
  if (!ok) {
    cli_error(&d);
    ir_graph_free(&g);
    return EXIT_USER;
  }
  FILE *log = o->verbose ? stderr : NULL;
  if (o->weights) ok = st_read(o->weights, &wf, &d) && fe_bind_native(&g, &wf, IR_OP_PARAM, p.value, NULL, log, &d);
  else ok = fe_init_native(&g, o->seed, p.value, &d);
  fill_inputs(&g, p.value, &spec);
  Copy *copies = calloc((size_t)g.n_grads * 3 + 1, sizeof *copies);
  int n_copies = copy_list(&g, p.value, p.bytes, &spec, n_model_outputs, copies);
  int threads = o->threads ? o->threads : rt_default_threads(o->tuning.threads), iters = o->iters ? o->iters : 10;
  double *t = calloc((size_t)iters, sizeof *t);
  for (int i = -2; ok && i < iters; i++) {  // two warm-up steps, then the timed ones
    double t0 = rt_now_ms();
    *p.seed = (uint64_t)(i + 2);
    rt_plan_prepare(&p.plan, threads);  // re-packs the weights the last update changed
    rt_plan_run(&p.plan, threads);
    for (int k = 0; k < n_copies; k++) memcpy(copies[k].dst, copies[k].src, copies[k].bytes);
    if (i >= 0) t[i] = rt_now_ms() - t0;
    ok = cg_program_status(&p, &d);
  }
  if (ok) {
    double median = rt_sort_median(t, iters);
    int64_t params = ir_count_params(&g);
    printf("model: %s\nmode: train (%s)\nthreads: %d\niters: %d\nkernels: %d\nsteps: %d\n", g.file,
           spec.sgd ? "sgd" : "adamw", threads, iters, p.n_kernels, p.plan.n_steps);
    printf("compile_ms: %.1f\nmedian_ms: %.3f\nmin_ms: %.3f\nmax_ms: %.3f\n", p.compile_ms, median,
           t[0], t[iters - 1]);
    printf("compile_lower_ms: %.1f\ncompile_llvm_ms: %.1f\n", p.lower_ms, p.llvm_ms);
    printf("parameters: %lld\n", (long long)params);
  } else {
    cli_error(&d);
  }
  free(t);
  free(copies);
  st_free(&wf);
  cg_program_free(&p);
  ir_graph_free(&g);
  return ok ? 0 : EXIT_USER;
}
