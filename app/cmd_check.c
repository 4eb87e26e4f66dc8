// `kiln check`, `kiln dump`, `kiln ops`: look at a model without running it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "codegen/codegen.h"
#include "codegen/compile.h"
#include "api/memory.h"
#include "app/cli.h"
#include "passes/passes.h"
#include "runtime/files.h"

// This process's peak resident bytes so far (getrusage: kilobytes on Linux).
static uint64_t cli_own_peak_rss(void) {
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024 : 0;
}

void cli_error(const Diag *d) { fprintf(stderr, "kiln: %s\n", d->set ? d->msg : "error"); }

int cli_check_output(const CliOptions *o) {
  // Every input is compared, though kiln train reads them all before its first step: -o
  // names the file that holds the result, so an -o equal to an input loses that input.
  // --trace is compared with them and with -o.
  RtNamedPath inputs[] = {{"MODEL", o->model},           {"--weights", o->weights}, {"--inputs", o->inputs},
                          {"--data", o->data},           {"--resume", o->resume},   {"--init", o->init},
                          {"--eval-data", o->eval_data}, {"--vocab", o->vocab},     {"-o", NULL}};
  int n = (int)(sizeof inputs / sizeof inputs[0]) - 1;
  Diag d = {0};
  int code = 0;
  // data synth -o DIR and compile --emit lib -o DIR write directories of new files.
  if (o->output && strcmp(o->cmd, "data") && !(o->emit && !strcmp(o->emit, "lib"))) {
    code = rt_output_check("-o", o->output, inputs, n, &d);
    inputs[n++].path = o->output;
  }
  if (!code && o->trace) code = rt_output_check("--trace", o->trace, inputs, n, &d);
  if (code) cli_error(&d);
  return code;
}

// The peak resident bytes of a run of the plan: the process (code, the model, its lowering)
// plus the larger of two moments. Binding: every parameter's buffer, then the packing, one
// weight at a time, into the arena's packed copies while the weights only packing reads are
// freed (rt_instance_prepare), so at worst one of them twice. Running: the parameters still
// held, the arena (packed copies and values) and the inputs. A trainer (kiln train, kiln
// bench --train) holds every parameter and its optimiser state, packs in every run (into the
// arena's scratch), and reads the weights or checkpoint one tensor at a time (st_open) into
// buffers it holds anyway, so its binding stays below its running.
// The JIT adds its kernels' code and LLVM's state (8 MB measured on VisualBERT VQA at 2, 8
// and 12 layers with the compile cache warm; a cold compile of a small model peaks higher,
// in LLVM, before any weight is read).
enum { JIT_BYTES = 8 << 20 };
static uint64_t predicted_rss(const KilnMemory *m, bool trainer, uint64_t process) {
  uint64_t held = trainer ? m->params : m->params - m->pack_only;
  uint64_t binding = m->params + (trainer ? 0 : m->largest_pack_only) + m->inputs;
  uint64_t running = held + m->state + m->arena + m->inputs;
  return process + JIT_BYTES + (binding > running ? binding : running);
}

// The plan of what check --memory predicts without --train: the outputs (with --grad the
// loss and every gradient), lowered as the graph is.
static bool graph_memory(const CliOptions *o, const IrGraph *g, KilnMemory *mem, Diag *d) {
  bool *want = calloc((size_t)g->n_nodes + 1, sizeof *want);
  if (!want) return diag_error(d, "out of memory");
  if (o->grad) {
    for (int i = 0; i < g->n_losses; i++)
      if (!strcmp(g->losses[i].name, o->loss ? o->loss : "loss")) want[g->losses[i].node->id] = true;
    for (int i = 0; i < g->n_grads; i++) want[g->grads[i].grad->id] = true;
  } else {
    for (int i = 0; i < g->n_outputs; i++) want[g->outputs[i]->id] = true;
  }
  CgOptions copt = {.training = o->grad, .pack_each_run = o->grad, .tuning = o->tuning,
                    .no_memplan = pass_disabled(o->disabled, o->n_disabled, "memplan")};
  bool ok = kiln_memory_of(g, want, &copt, mem, d);
  free(want);
  return ok;
}

// check --memory: plans what a run reads (outputs; with --grad the loss and every gradient;
// with --train the trainer's program, kiln_trainer_memory) and prints the plan's sizes and
// the predicted peak RSS, part by part.
static bool print_memory(const CliOptions *o, const IrGraph *g) {
  KilnMemory m;
  Diag d = {0};
  KilnSet sets[CLI_MAX_SETS];
  KilnOptions ko = cli_kiln_options(o, sets);
  KilnTrainOptions to = cli_train_options(o);
  if (!(o->train ? kiln_trainer_memory(o->model, &ko, &to, &m, &d) : graph_memory(o, g, &m, &d))) {
    cli_error(&d);
    return false;
  }
  bool planned = !pass_disabled(o->disabled, o->n_disabled, "memplan");
  printf("steps: %d\n", m.steps);
  printf("arena_bytes: %llu%s\n", (unsigned long long)m.arena, planned ? "" : " (memplan disabled: one allocation per buffer)");
  printf("lower_bound_bytes: %llu\n", (unsigned long long)m.lower_bound);
  printf("unplanned_bytes: %llu\n", (unsigned long long)m.unplanned);
  printf("pinned_bytes: %llu (read after the run, or packed weights)\n", (unsigned long long)m.pinned);
  printf("in_place_buffers: %d\n", m.in_place);
  printf("weights_bytes: %llu (%llu of them held only packed, in the arena, after the first run)\n",
         (unsigned long long)m.params, (unsigned long long)(o->train ? 0 : m.pack_only));
  printf("packed_bytes: %llu (in the arena: packed weights pinned%s)\n", (unsigned long long)m.packed,
         o->grad || o->train ? "; training packs them in every run, into scratch of the arena" : "");
  if (o->train) {
    printf("gradients_bytes: %llu (in the arena)\n", (unsigned long long)m.grads);
    printf("optimizer_state_bytes: %llu (%s)\n", (unsigned long long)m.state,
           o->optimizer && !strcmp(o->optimizer, "sgd") ? "SGD's momentum" : "AdamW's m and v");
  }
  printf("inputs_bytes: %llu\n", (unsigned long long)m.inputs);
  uint64_t process = cli_own_peak_rss();
  printf("overhead_bytes: %llu (the JIT %d MB, and this process: code, the model, its lowering)\n",
         (unsigned long long)(process + JIT_BYTES), JIT_BYTES >> 20);
  printf("predicted_peak_rss_bytes: %llu (%s: weights, %sarena, inputs, overhead)\n",
         (unsigned long long)predicted_rss(&m, o->train, process),
         o->train ? "kiln train / kiln bench --train" : o->grad ? "forward and backward, no optimiser (kiln train: --train)" : "kiln run / kiln bench",
         o->train ? "optimizer state, " : "");
  return true;
}

bool cli_load(const CliOptions *o, const char *loss, IrGraph *g) {
  Diag d = {0};
  if (!fe_load_model_limited(o->model, o->sets, o->n_sets, &(FeLimits){.max_nodes = o->max_nodes, .max_config = o->max_config},
                             g, &d)) {
    cli_error(&d);
    return false;
  }
  PassOptions po = {.loss = loss, .bf16 = o->precision == KILN_PRECISION_BF16,
                    .int8 = o->precision == KILN_PRECISION_INT8, .recompute_layers = o->recompute_layers};
  if (!pass_run_pipeline(g, &po, o->after, o->disabled, o->n_disabled, &d)) {
    cli_error(&d);
    ir_graph_free(g);
    return false;
  }
  return true;
}

static void print_tensor_line(const IrNode *n, const char *label) {
  char s[160];
  printf("  %-28s %s%s\n", label ? label : n->name, dt_name(n->dtype),
         ir_shape_str(&n->shape, s, sizeof s));
}

// Kernels per encoder layer: computed nodes (not input, param or reshape, which cost no
// kernel) that the first instance of block "layer" made, i.e. whose place is
// "...blocks.layer.nodes[k] (from ... i=0)"; with --grad also the backward nodes autodiff
// builds for them (they carry the same place). -1: the model has no such block.
static int layer_kernels(const IrGraph *g) {
  int n = 0;
  bool any = false;
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *x = g->nodes[i];
    if (!strstr(x->where, "blocks.layer.") || !strstr(x->where, " i=0)")) continue;
    any = true;
    if (x->op != IR_OP_INPUT && x->op != IR_OP_PARAM && x->op != IR_OP_RESHAPE) n++;
  }
  return any ? n : -1;
}

// The loss check differentiates: with --grad or --train (the trainer's), else none.
static const char *check_loss(const CliOptions *o) {
  return o->grad || o->train ? (o->loss ? o->loss : "loss") : NULL;
}

// The same graph with the fuse pass off.
static int layer_kernels_unfused(const CliOptions *o) {
  CliOptions u = *o;
  if (u.n_disabled < (int)(sizeof u.disabled / sizeof u.disabled[0])) u.disabled[u.n_disabled++] = "fuse";
  u.after = NULL;
  IrGraph g;
  if (!cli_load(&u, check_loss(o), &g)) return -1;
  int n = layer_kernels(&g);
  ir_graph_free(&g);
  return n;
}

int cmd_check(const CliOptions *o) {
  if (o->train && !o->memory) {
    fprintf(stderr, "kiln: check --train needs --memory (kiln check --help)\n");
    return EXIT_USAGE;
  }
  IrGraph g;
  if (!cli_load(o, check_loss(o), &g)) return EXIT_USER;
  printf("model: %s\nconfig:", g.file);
  for (int i = 0; i < g.n_config; i++) {
    if (g.config[i].is_int) printf(" %s=%lld", g.config[i].name, (long long)g.config[i].value);
    else printf(" %s=%g", g.config[i].name, g.config[i].value);
  }
  printf("\ninputs:\n");
  for (int i = 0; i < g.n_nodes; i++)
    if (g.nodes[i]->op == IR_OP_INPUT) print_tensor_line(g.nodes[i], NULL);
  printf("outputs:\n");
  for (int i = 0; i < g.n_outputs; i++) print_tensor_line(g.outputs[i], NULL);
  printf("losses:\n");
  for (int i = 0; i < g.n_losses; i++) print_tensor_line(g.losses[i].node, g.losses[i].name);
  int n_params = 0, n_ops = 0;
  for (int i = 0; i < g.n_nodes; i++) {
    if (g.nodes[i]->op == IR_OP_PARAM) n_params++;
    else if (g.nodes[i]->op != IR_OP_INPUT) n_ops++;
  }
  if (o->verbose) {
    printf("parameter tensors:\n");
    for (int i = 0; i < g.n_nodes; i++)
      if (g.nodes[i]->op == IR_OP_PARAM) print_tensor_line(g.nodes[i], NULL);
  }
  double flops = ir_count_flops(&g);
  printf("nodes: %d (%d ops, %d parameter tensors)\n", g.n_nodes, n_ops, n_params);
  printf("parameters: %lld\n", (long long)ir_count_params(&g));
  printf("flops_per_forward: %.0f (%.2f GFLOP)\n", flops, flops / 1e9);
  if (o->verbose) {
    CgHost h;
    cg_host_query(&h);
    printf("host: %s, %d-lane f32 vectors\n", h.cpu, h.vector_floats);
    int after = layer_kernels(&g), before = layer_kernels_unfused(o);
    if (after >= 0 && before >= 0)
      printf("kernels_per_layer: %d before fusion, %d after (computed nodes of block layer, i=0%s, "
             "reshapes excluded)\n", before, after, check_loss(o) ? ", forward and backward" : "");
  }
  bool ok = !o->memory || print_memory(o, &g);
  ir_graph_free(&g);
  return ok ? 0 : EXIT_USER;
}

int cmd_dump(const CliOptions *o) {
  IrGraph g;
  if (!cli_load(o, o->grad ? (o->loss ? o->loss : "loss") : NULL, &g)) return EXIT_USER;
  if (o->format && strcmp(o->format, "dot") == 0) ir_print_dot(&g, stdout);
  else ir_print_text(&g, stdout);
  ir_graph_free(&g);
  return 0;
}

int cmd_ops(const CliOptions *o) {
  (void)o;
  static const char *const kinds[] = {"int", "float", "bool", "ints", "dtype"};
  for (int i = 0; i < IR_OP_COUNT; i++) {
    const IrOpInfo *op = &ir_ops[i];
    if (i == IR_OP_INPUT || i == IR_OP_PARAM) continue;
    if (op->max_in < 0) printf("%s (%d+ inputs)", op->name, op->min_in);
    else printf("%s (%d input%s)", op->name, op->min_in, op->min_in == 1 ? "" : "s");
    for (int k = 0; op->attrs[k].name; k++) {
      const IrAttrSpec *a = &op->attrs[k];
      printf(" %s:%s", a->name, kinds[a->kind]);
      if (a->required) continue;
      if (a->kind == IR_ATTR_INTS) printf("=[]");
      else if (a->kind == IR_ATTR_BOOL) printf("=%s", a->def ? "true" : "false");
      else if (a->kind == IR_ATTR_DTYPE) printf("=%s", dt_name((DType)a->def));
      else printf("=%g", a->def);
    }
    printf("\n    %s\n", op->doc);
  }
  printf("\nattributes are written name:kind, with =default when optional\n");
  printf("\npasses (for --after and --disable-pass; * on the kernel steps, after the graph):");
  for (int i = 0; i < pass_count; i++)
    printf(" %s%s", pass_pipeline[i].name, pass_pipeline[i].stage == PASS_PROGRAM ? "*" : "");
  printf("\n");
  return 0;
}
