// `kiln init` and `kiln run`: initialise weights; run a model on the reference evaluator.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/bind.h"
#include "codegen/compile.h"
#include "app/cli.h"

static int need(const char *what, const char *opt, const char *cmd) {
  fprintf(stderr, "kiln: %s needs %s %s (kiln %s --help)\n", cmd, opt, what, cmd);
  return EXIT_USAGE;
}

int cmd_init(const CliOptions *o) {
  if (!o->output) return need("FILE", "-o", "init");
  IrGraph g;
  if (!cli_load(o, NULL, &g)) return EXIT_USER;
  IrValues vals;
  ir_values_init(&vals, &g);
  Diag d = {0};
  if (!fe_init_params(&g, o->seed, &vals, &d)) {
    cli_error(&d);
    ir_values_free(&vals);
    ir_graph_free(&g);
    return EXIT_USER;
  }
  int n = 0;
  const IrNode **nodes = malloc(((size_t)g.n_nodes + 1) * sizeof *nodes);
  const char **names = malloc(((size_t)g.n_nodes + 1) * sizeof *names);
  for (int i = 0; i < g.n_nodes; i++)
    if (g.nodes[i]->op == IR_OP_PARAM) {
      nodes[n] = g.nodes[i];
      names[n++] = g.nodes[i]->name;
    }
  bool ok = fe_write_values(o->output, nodes, names, n, &vals, &d);
  if (ok) fprintf(stderr, "kiln: wrote %d parameters (%lld values) to %s\n", n,
                  (long long)ir_count_params(&g), o->output);
  else cli_error(&d);
  free(nodes);
  free(names);
  ir_values_free(&vals);
  ir_graph_free(&g);
  return ok ? 0 : EXIT_USER;
}

// The outputs (and losses) computable from the given inputs, in declaration order.
static int select_outputs(const IrGraph *g, const bool *given, const IrNode **nodes,
                          const char **names, FILE *log, const char *inputs, Diag *d) {
  int nn = g->n_nodes, n_out = 0;
  bool *avail = calloc((size_t)nn + 1, sizeof(bool));
  fe_available(g, given, avail);
  for (int i = 0; i < g->n_outputs; i++)
    if (avail[g->outputs[i]->id]) {
      nodes[n_out] = g->outputs[i];
      names[n_out++] = g->outputs[i]->name;
    } else if (log) {
      fprintf(log, "kiln: output \"%s\" skipped: its inputs are not all given\n", g->outputs[i]->name);
    }
  for (int i = 0; i < g->n_losses; i++)
    if (avail[g->losses[i].node->id]) {
      nodes[n_out] = g->losses[i].node;
      names[n_out++] = g->losses[i].name;
    } else if (log) {
      fprintf(log, "kiln: loss \"%s\" skipped: its inputs are not all given\n", g->losses[i].name);
    }
  free(avail);
  if (n_out == 0) {
    char missing[1024] = "";
    for (int i = 0; i < nn; i++)
      if (g->nodes[i]->op == IR_OP_INPUT && !given[i])
        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s\"%s\"",
                 missing[0] ? ", " : "", g->nodes[i]->name);
    diag_error(d, "%s: no output can be computed; missing inputs: %s", inputs, missing);
  }
  return n_out;
}

static bool run_ref(const CliOptions *o, const IrGraph *g, StFile *wf, const StFile *inf,
                    const IrNode **nodes, const char **names, int n_out, FILE *log, Diag *d) {
  IrValues vals;
  ir_values_init(&vals, g);
  bool *given = calloc((size_t)g->n_nodes + 1, sizeof(bool));
  bool *want = calloc((size_t)g->n_nodes + 1, sizeof(bool));
  for (int k = 0; k < n_out; k++) want[nodes[k]->id] = true;
  IrEvalMode mode = {.training = false, .seed = o->seed};
  bool ok = fe_bind_weights(g, wf, &vals, log, d) && fe_bind_inputs(g, inf, &vals, given, log, d) &&
            ir_eval(g, &vals, want, &mode, d) && fe_write_values(o->output, nodes, names, n_out, &vals, d);
  free(given);
  free(want);
  ir_values_free(&vals);
  return ok;
}

static bool run_jit(const CliOptions *o, const IrGraph *g, StFile *wf, const StFile *inf,
                    const IrNode **nodes, const char **names, int n_out, FILE *log, Diag *d) {
  bool *want = calloc((size_t)g->n_nodes + 1, sizeof(bool));
  for (int k = 0; k < n_out; k++) want[nodes[k]->id] = true;
  CgOptions copt = {.dump_dir = o->dump_llvm, .no_memplan = cli_pass_disabled(o, "memplan"), .tuning = o->tuning};
  CgProgram p;
  bool ok = cg_compile(g, want, &copt, &p, d);
  free(want);
  if (!ok) return false;
  if (log) fprintf(log, "kiln: compiled %d kernels, %d steps in %.0f ms\n", p.n_kernels, p.plan.n_steps, p.compile_ms);
  int threads = o->threads ? o->threads : rt_default_threads(o->tuning.threads);
  ok = fe_bind_native(g, wf, IR_OP_PARAM, p.value, NULL, log, d);
  st_free(wf);  // bound: the file's bytes are not needed while running (one copy resident)
  ok = ok &&
       fe_bind_native(g, inf, IR_OP_INPUT, p.value, NULL, log, d);
  if (ok) {
    rt_plan_prepare(&p.plan, threads);
    rt_plan_run(&p.plan, threads);
    ok = cg_program_status(&p, d) && fe_write_native(o->output, nodes, names, n_out, p.value, d);
  }
  cg_program_free(&p);
  return ok;
}

int cmd_run(const CliOptions *o) {
  if (!o->weights) return need("FILE", "--weights", "run");
  if (!o->inputs) return need("FILE", "--inputs", "run");
  if (!o->output) return need("FILE", "-o", "run");
  IrGraph g;
  if (!cli_load(o, NULL, &g)) return EXIT_USER;
  Diag d = {0};
  StFile wf = {0}, inf = {0};
  int n_out = 0;
  bool *given = calloc((size_t)g.n_nodes + 1, sizeof(bool));
  const IrNode **nodes = malloc(((size_t)g.n_outputs + g.n_losses + 1) * sizeof *nodes);
  const char **names = malloc(((size_t)g.n_outputs + g.n_losses + 1) * sizeof *names);
  FILE *log = o->verbose ? stderr : NULL;
  bool ok = st_read(o->weights, &wf, &d) && st_read(o->inputs, &inf, &d) &&
            (!o->text || cli_text_inputs(&g, o->text, o->vocab, &inf, &d));
  if (ok) {
    for (int k = 0; k < inf.n; k++) {
      const IrNode *n = ir_graph_find(&g, inf.tensors[k].name);
      if (n && n->op == IR_OP_INPUT) given[n->id] = true;
    }
    n_out = select_outputs(&g, given, nodes, names, log, o->inputs, &d);
    ok = n_out > 0;
  }
  bool jit = !o->backend || strcmp(o->backend, "jit") == 0;
  if (ok) ok = (jit ? run_jit : run_ref)(o, &g, &wf, &inf, nodes, names, n_out, log, &d);
  if (ok && o->verbose) fprintf(stderr, "kiln: wrote %d tensors to %s\n", n_out, o->output);
  if (!ok) cli_error(&d);
  free(given);
  free(nodes);
  free(names);
  st_free(&wf);
  st_free(&inf);
  ir_graph_free(&g);
  return ok ? 0 : EXIT_USER;
}
