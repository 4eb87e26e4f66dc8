// `kiln bench`: compile a model once with the JIT and time warm inference runs. Prints
// `compile_ms: X` and `median_ms: X` (the lines scripts read), then details.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/compile.h"
#include "frontend/bind.h"
#include "frontend/cli.h"
#include "runtime/timing.h"

// Inputs when none are given: integers 0 (valid ids and labels), floats 1 (full masks).
static void default_inputs(const IrGraph *g, void *const *value) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_INPUT || !value[i]) continue;
    size_t count = (size_t)ir_numel(&n->shape);
    for (size_t k = 0; k < count; k++) dt_store(n->dtype, value[i], k, n->dtype == DT_F32 ? 1.0 : 0.0);
  }
}

int cmd_bench(const CliOptions *o) {
  if (o->train) return cmd_bench_train(o);
  IrGraph g;
  if (!cli_load(o, NULL, &g)) return EXIT_USER;
  Diag d = {0};
  bool *want = calloc((size_t)g.n_nodes + 1, sizeof(bool));
  for (int i = 0; i < g.n_outputs; i++) want[g.outputs[i]->id] = true;
  CgOptions copt = {.dump_dir = o->dump_llvm, .no_memplan = cli_pass_disabled(o, "memplan")};
  CgProgram p;
  StFile wf = {0}, inf = {0};
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
  default_inputs(&g, p.value);
  if (ok && o->inputs) ok = st_read(o->inputs, &inf, &d) && fe_bind_native(&g, &inf, IR_OP_INPUT, p.value, NULL, log, &d);
  int threads = o->threads ? o->threads : rt_default_threads(), iters = o->iters ? o->iters : 20;
  double *t = calloc((size_t)iters, sizeof *t);
  if (ok) {
    rt_plan_prepare(&p.plan, threads);
    for (int i = 0; i < 3; i++) rt_plan_run(&p.plan, threads);  // warm-up
    ok = cg_program_status(&p, &d);
  }
  for (int i = 0; ok && i < iters; i++) {
    double t0 = rt_now_ms();
    rt_plan_run(&p.plan, threads);
    t[i] = rt_now_ms() - t0;
  }
  if (ok) {
    double median = rt_sort_median(t, iters);
    double gflop = ir_count_flops(&g) / 1e9;
    printf("model: %s\nthreads: %d\niters: %d\nkernels: %d\nsteps: %d\n", g.file, threads, iters,
           p.n_kernels, p.plan.n_steps);
    printf("compile_ms: %.1f\nmedian_ms: %.3f\nmin_ms: %.3f\nmax_ms: %.3f\n", p.compile_ms, median,
           t[0], t[iters - 1]);
    printf("compile_lower_ms: %.1f\ncompile_llvm_ms: %.1f\ncompile_buffers_ms: %.1f\n", p.lower_ms,
           p.llvm_ms, p.compile_ms - p.lower_ms - p.llvm_ms);
    printf("gflop_per_run: %.3f\ngflops: %.1f\n", gflop, gflop / (median / 1e3));
  } else {
    cli_error(&d);
  }
  free(t);
  st_free(&wf);
  st_free(&inf);
  cg_program_free(&p);
  ir_graph_free(&g);
  return ok ? 0 : EXIT_USER;
}
