// codegen's output (see compile.h cg_describe): the IR-free RtProgram of the lowered steps
// — buffers placed by the memory plan, steps, tensor descriptions, data-error checks.
#include <stdlib.h>
#include <string.h>

#include "codegen/compile.h"

// The check of node n: what a data error its kernels report says about it.
static RtCheck check_of(const IrNode *n) {
  int64_t range = 0;
  if (n->op == IR_OP_GATHER || n->op == IR_OP_SCATTER_ADD) {
    // gather: an index into the data's axis; scatter_add: into the output's.
    const IrShape *ranged = n->op == IR_OP_SCATTER_ADD ? &n->shape : &n->in[0]->shape;
    int64_t axis = ir_attr_int(n, "axis");
    if (axis < 0) axis += ranged->rank;
    range = ranged->dim[axis];
  } else if (n->n_in > 0 && n->in[0]->shape.rank > 0) {  // cross_entropy: classes are the last dim
    range = n->in[0]->shape.dim[n->in[0]->shape.rank - 1];
  }
  return (RtCheck){.node = n->id, .where = n->where, .name = n->name, .op = ir_ops[n->op].name,
                   .dtype = dt_name(n->dtype), .range = range};
}

static RtTensor tensor_of(const IrNode *n, const char *name, bool where, uint64_t needs,
                          uint64_t feeds) {
  RtTensor t = {.name = name, .where = where ? n->where : NULL, .dtype = n->dtype,
                .rank = n->shape.rank, .buf = n->id, .needs = needs, .feeds = feeds};
  for (int i = 0; i < n->shape.rank; i++) t.shape[i] = n->shape.dim[i];
  return t;
}

static const IrNode *output_node(const IrGraph *g, int j, const char **name) {
  if (j < g->n_outputs) return *name = g->outputs[j]->name, g->outputs[j];
  *name = g->losses[j - g->n_outputs].name;
  return g->losses[j - g->n_outputs].node;
}

// Buffers: node values, scratch, the steps' stream tables, status word, seed; placed by the
// memory plan mem (NULL: each of its own).
static void place_buffers(const IrGraph *g, const bool *need, const CgSteps *steps,
                          const CgMemory *mem, bool planned, RtBuf *bufs) {
  int nn = g->n_nodes, ns = steps->n_scratch;
  for (int i = 0; i < nn; i++) {
    const IrNode *n = g->nodes[i];
    RtBuf *b = &bufs[i];
    *b = (RtBuf){.kind = RT_BUF_NONE, .alias = -1, .bytes = mem->node_bytes[i]};
    if (!need[i]) continue;
    if (ir_op_is_view(n->op) || mem->in_place_of[i] >= 0)
      *b = (RtBuf){RT_BUF_ALIAS, cg_memory_home(mem, g, i), b->bytes, 0, NULL};
    else if (planned && mem->node_offset[i] != CG_NO_OFFSET)
      *b = (RtBuf){RT_BUF_ARENA, -1, b->bytes, mem->node_offset[i], NULL};
    else b->kind = RT_BUF_OWN;
  }
  for (int k = 0; k < ns; k++)
    bufs[nn + k] = (RtBuf){planned ? RT_BUF_ARENA : RT_BUF_OWN, -1, mem->scratch_bytes[k],
                           planned ? mem->scratch_offset[k] : 0, NULL};
  int c = nn + ns;
  for (int s = 0; s < steps->n; s++)
    for (int a = 0; a < steps->v[s].n_args; a++)
      if (steps->v[s].args[a].kind == CG_ARG_STREAMS)
        bufs[c++] = (RtBuf){RT_BUF_CONST, -1, sizeof steps->v[s].streams, 0, steps->v[s].streams};
  bufs[c] = (RtBuf){RT_BUF_OWN, -1, 4 * sizeof(int64_t), 0, NULL};
  bufs[c + 1] = (RtBuf){RT_BUF_OWN, -1, 2 * sizeof(uint64_t), 0, NULL};  // seed, share
}

// Stream tables a step list carries (one constant buffer each).
static int count_streams(const CgSteps *steps) {
  int n = 0;
  for (int s = 0; s < steps->n; s++)
    for (int a = 0; a < steps->v[s].n_args; a++) n += steps->v[s].args[a].kind == CG_ARG_STREAMS;
  return n;
}

// The buffer id of argument a; *next_const: the id of the next stream table.
static int arg_buffer(int nn, int n_bufs, CgArg a, int *next_const) {
  return a.kind == CG_ARG_NODE      ? a.id
         : a.kind == CG_ARG_SCRATCH ? nn + a.id
         : a.kind == CG_ARG_STREAMS ? (*next_const)++
         : a.kind == CG_ARG_STATUS  ? n_bufs - 2
                                    : n_bufs - 1;
}

bool cg_describe(const IrGraph *g, const bool *need, const bool *want, const CgSteps *steps,
                 bool planned, RtProgram *out, MemStats *stats, Diag *d) {
  memset(out, 0, sizeof *out);
  int nn = g->n_nodes, ns = steps->n_scratch, n_bufs = nn + ns + count_streams(steps) + 2, next_const = nn + ns;
  int n_in = 0, n_par = 0, n_out = g->n_outputs + g->n_losses, n_args = 0, n_checks = 0;
  for (int i = 0; i < nn; i++) {
    n_in += g->nodes[i]->op == IR_OP_INPUT;
    n_par += g->nodes[i]->op == IR_OP_PARAM;
  }
  for (int s = 0; s < steps->n; s++) n_args += steps->v[s].n_args;
  CgMemory mem = {0};
  if (!cg_memory_plan(g, need, want, steps, &mem, d)) return false;
  RtBuf *bufs = calloc((size_t)n_bufs + 1, sizeof *bufs);
  RtProgramStep *st = calloc((size_t)steps->n + 1, sizeof *st);
  int *arg_ids = calloc((size_t)n_args + 1, sizeof *arg_ids);
  RtTensor *tensors = calloc((size_t)n_in + n_out + n_par + 1, sizeof *tensors);
  RtCheck *checks = calloc((size_t)nn + 1, sizeof *checks);
  bool *has_check = calloc((size_t)nn + 1, sizeof *has_check);
  // needs[i]: inputs node i depends on; feeds[i]: outputs (then losses) that depend on it
  // (bits past 64 are dropped: `kiln compile` refuses such programs).
  uint64_t *needs = calloc((size_t)nn + 1, sizeof *needs), *feeds = calloc((size_t)nn + 1, sizeof *feeds);
  *out = (RtProgram){.name = g->file, .n_nodes = nn, .n_bufs = n_bufs, .bufs = bufs,
                     .arena_bytes = planned ? mem.stats.arena_bytes : 0, .n_steps = steps->n,
                     .steps = st, .arg_ids = arg_ids, .n_arg_ids = n_args, .n_inputs = n_in,
                     .n_outputs = n_out, .n_params = n_par, .inputs = tensors,
                     .outputs = tensors + n_in, .params = tensors + n_in + n_out, .checks = checks};
  if (!bufs || !st || !arg_ids || !tensors || !checks || !has_check || !needs || !feeds) {
    free(has_check), free(needs), free(feeds);
    cg_memory_free(&mem);
    cg_describe_free(out);
    return diag_error(d, "out of memory describing the program");
  }
  if (stats) *stats = mem.stats;
  place_buffers(g, need, steps, &mem, planned, bufs);
  cg_memory_free(&mem);

  for (int i = 0, k = 0; i < nn; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op == IR_OP_INPUT && k < 64) needs[i] = 1ull << k++;
    for (int a = 0; a < n->n_in; a++) needs[i] |= needs[n->in[a]->id];
  }
  for (int j = 0; j < n_out && j < 64; j++) {
    const char *name;
    feeds[output_node(g, j, &name)->id] |= 1ull << j;
  }
  for (int i = nn - 1; i >= 0; i--)
    for (int a = 0; a < g->nodes[i]->n_in; a++) feeds[g->nodes[i]->in[a]->id] |= feeds[i];

  for (int s = 0, at = 0; s < steps->n; s++) {
    const CgStep *cs = &steps->v[s];
    st[s] = (RtProgramStep){.kernel = cs->fn, .name = g->nodes[cs->node]->name, .work = cs->work,
                            .once = cs->once, .n_args = cs->n_args, .args = at, .node = cs->node,
                            .needs = needs[cs->node], .feeds = feeds[cs->node]};
    for (int a = 0; a < cs->n_args; a++) {
      arg_ids[at++] = arg_buffer(nn, n_bufs, cs->args[a], &next_const);
      if (cs->args[a].kind == CG_ARG_STATUS && !has_check[cs->node]) {
        has_check[cs->node] = true;
        checks[n_checks++] = check_of(g->nodes[cs->node]);
      }
    }
  }
  out->n_checks = n_checks;
  for (int i = 0, ki = 0, kp = 0; i < nn; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op == IR_OP_INPUT) tensors[ki++] = tensor_of(n, n->name, false, needs[i], feeds[i]);
    if (n->op == IR_OP_PARAM) tensors[n_in + n_out + kp++] = tensor_of(n, n->name, true, needs[i], feeds[i]);
  }
  for (int j = 0; j < n_out; j++) {
    const char *name;
    const IrNode *o = output_node(g, j, &name);
    tensors[n_in + j] = tensor_of(o, name, false, needs[o->id], feeds[o->id]);
  }
  free(has_check);
  free(needs);
  free(feeds);
  return true;
}

void cg_describe_free(RtProgram *p) {
  free((void *)p->bufs);
  free((void *)p->steps);
  free((void *)p->arg_ids);
  free((void *)p->inputs);
  free((void *)p->checks);
  memset(p, 0, sizeof *p);
}
