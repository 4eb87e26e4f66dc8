// Fused attention micro-benchmark: one attention node (and one attention_grad node) of the
// VisualBERT-base shape (12 heads x 64, mask [B,1,1,n]) at n = 120 and 512, compiled by
// cg_compile and run through the runtime plan. Prints the median ms per run (after warm-up)
// and the GFLOP/s of the forward's 4 n^2 H D flops (backward: 2.5x that, the 10 products of
// recompute + gradients), and the least CPU time the calling thread spent in one run (with
// 1 thread: the least disturbed by other load on the machine). Forward and backward run
// twice each: f32 and bf16 (the attribute --precision bf16 sets: Q.K^T and P.V, and the
// backward's five products, over bf16 operands).
//   attn_bench [runs [threads]]   KILN_BENCH_CPU / KILN_BENCH_W as in gemm_bench (AVX2:
//                                 KILN_BENCH_CPU=haswell)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/compile.h"
#include "ir/ir.h"
#include "runtime/timing.h"

static IrNode *source(IrGraph *g, const char *name, int rank, const int64_t *dims) {
  IrNode *n = ir_graph_add(g, IR_OP_INPUT, name, "attn_bench");
  n->shape.rank = rank;
  for (int k = 0; k < rank; k++) n->shape.dim[k] = dims[k];
  n->dtype = DT_F32;
  return n;
}

// q, k, v, mask inputs and the attention node (grad: attention_grad with out, dout inputs).
static void build(IrGraph *g, int64_t B, int64_t n, int64_t H, int64_t D, bool grad, bool bf16) {
  ir_graph_init(g, "attn_bench");
  int64_t x3[3] = {B, n, H * D}, m4[4] = {B, 1, 1, n};
  IrNode *in[6];
  int n_in = 0;
  const char *names[5] = {"q", "k", "v", "out", "dout"};
  for (int t = 0; t < (grad ? 5 : 3); t++) in[n_in++] = source(g, names[t], 3, x3);
  in[n_in++] = source(g, "mask", 4, m4);
  IrNode *a = ir_graph_add(g, grad ? IR_OP_ATTENTION_GRAD : IR_OP_ATTENTION, "attn", "attn_bench");
  a->n_in = n_in;
  a->in = arena_alloc(&g->arena, (size_t)n_in * sizeof *a->in);
  memcpy(a->in, in, (size_t)n_in * sizeof *in);
  ir_set_int(a, "heads", H);
  ir_set_float(a, "scale", 0.125);
  ir_set_float(a, "p", 0.0);
  ir_set_int(a, "bf16", bf16);
  g->outputs = arena_alloc(&g->arena, sizeof *g->outputs);
  g->outputs[0] = a;
  g->n_outputs = 1;
  Diag d = {0};
  if (!ir_graph_finish(g, &d)) {
    fprintf(stderr, "attn_bench: %s\n", d.msg);
    exit(1);
  }
}

static double cpu_ms(void) {  // this thread's CPU time: less sensitive to other load
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static double cpu_best;

static double run(int64_t n, bool grad, bool bf16, int runs, int threads) {
  IrGraph g;
  build(&g, 1, n, 12, 64, grad, bf16);
  CgOptions o = {0};
  rt_tuning_read(&o.tuning, getenv);  // KILN_ATTN_ROWS, KILN_GEMM_*, as kiln reads them
  const char *cpu = getenv("KILN_BENCH_CPU");
  if (cpu && *cpu) {
    o.cpu = cpu, o.features = "";
    o.vector_floats = getenv("KILN_BENCH_W") ? atoi(getenv("KILN_BENCH_W")) : 8;
  }
  o.dump_dir = getenv("KILN_BENCH_DUMP");  // the optimised IR of each case's module
  CgProgram p;
  Diag d = {0};
  if (!cg_compile(&g, NULL, &o, &p, &d)) {
    fprintf(stderr, "attn_bench: %s\n", d.msg);
    exit(1);
  }
  for (int i = 0; i < g.n_nodes; i++) {
    const IrNode *s = g.nodes[i];
    if (s->op != IR_OP_INPUT) continue;
    float *v = p.value[i];
    for (int64_t j = 0; j < ir_numel(&s->shape); j++)
      v[j] = strcmp(s->name, "mask") == 0 ? (j % 7 == 6 ? -10000.0f : 0.0f)
                                          : (float)((j * 2654435761u) % 1000) / 1000.0f - 0.5f;
  }
  rt_plan_prepare(&p.plan, threads);
  double *t = malloc((size_t)runs * sizeof *t);
  cpu_best = 1e30;
  for (int r = 0; r < 3; r++) rt_plan_run(&p.plan, threads);
  for (int r = 0; r < runs; r++) {
    double t0 = rt_now_ms(), c0 = cpu_ms();
    rt_plan_run(&p.plan, threads);
    t[r] = rt_now_ms() - t0;
    double c = cpu_ms() - c0;
    if (c < cpu_best) cpu_best = c;
  }
  double ms = rt_sort_median(t, runs);
  if (getenv("KILN_BENCH_STEPS")) {  // each step's wall time, summed over `runs` runs
    double *step_ms = calloc((size_t)p.plan.n_steps + 1, sizeof *step_ms);
    for (int r = 0; r < runs; r++) rt_plan_run_profiled(&p.plan, threads, step_ms);
    for (int k = 0; k < p.plan.n_steps; k++)
      printf("  step %d %s: %.3f ms\n", k, p.steps.v[k].fn, step_ms[k] / runs);
    free(step_ms);
  }
  free(t);
  cg_program_free(&p);
  ir_graph_free(&g);
  return ms;
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 20, threads = argc > 2 ? atoi(argv[2]) : 1;
  if (runs < 1 || threads < 1) {
    fprintf(stderr, "usage: attn_bench [runs [threads]]\n");
    return 2;
  }
  static const int64_t ns[2] = {120, 512};
  for (int kind = 0; kind < 4; kind++)  // forward f32, forward bf16, backward, backward bf16
    for (int i = 0; i < 2; i++) {
      bool grad = kind >= 2;
      double ms = run(ns[i], grad, kind % 2, runs, threads);
      double flops = 4.0 * (double)ns[i] * (double)ns[i] * 12 * 64 * (grad ? 2.5 : 1.0);
      printf("%-13s n=%-4lld B=1 H=12 D=64 threads=%d: median %8.3f ms  %6.1f GFLOP/s; "
             "best CPU time of the calling thread %8.3f ms\n",
             (const char *[]){"forward", "forward bf16", "backward", "backward bf16"}[kind], (long long)ns[i], threads,
             ms, flops / ms * 1e-6, cpu_best);
    }
  return 0;
}
