// Lowering of fused nodes (passes/fuse.c) to one kernel each:
//   loop:      rows of the output's last dim; per W-lane column block, the body's ops on
//              registers (params loaded with broadcasting as in lower_ew.c), one store;
//   reduction: per row, the elementwise prologue written into the output row, then the
//              row op (softmax, log_softmax, layernorm) in place on that row (in cache);
//              for reduce_sum / mean / max the prologue's values are folded as computed;
//              an elementwise epilogue after the row op runs on the row in place;
//   gemm:      the matmul's CgGemm with the epilogue the fuse pass recorded (scale, bias,
//              GELU, residual or the GELU derivative: IrGemmEpilogue), applied in the
//              register tile (codegen/cg_gemm.c).
// Buffers: out, the fused node's inputs in order, then when dropout is live the seed and
// the step's stream table: the name hash of each of the body's masks (ir_body_mask).
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "codegen/compile.h"
#include "codegen/lower_rows.h"

static bool is_param(const IrBody *b, const IrNode *x) {
  return x->id < b->n_params && b->params[x->id] == x;
}

// Dropout or dropout_grad that draws a mask in this compilation.
static bool live_dropout(const Cg *cg, const IrNode *x) {
  if (!cg->training) return false;
  if (x->op == IR_OP_DROPOUT) return ir_attr_float(x, "p") > 0;
  if (x->op == IR_OP_DROPOUT_GRAD) return ir_attr_float(x->in[1], "p") > 0;
  return false;
}

// ---------------------------------------------------------------------------------------
// The body on registers at columns [col, col + lanes) of the current row.
typedef struct Body {
  const IrBody *b;
  const IrShape *shape;     // the shape of the body's elementwise nodes (the row shape)
  LLVMValueRef pbuf[16];    // param buffers
  LLVMValueRef poff[16];    // per param: element offset of the current row (broadcast)
  bool contig[16];          // per param: runs along the row (else one value per row)
  LLVMValueRef obase;       // flat index of the row's first element
  LLVMValueRef seed;        // seed buffer, or NULL
  LLVMValueRef streams;     // the step's stream table (CG_ARG_STREAMS), or NULL: baked in
  int upto;                 // evaluate body nodes [0, upto)
  int preset;               // body node whose value is read from orow (epilogue), or -1
  LLVMValueRef preset_val;  // ... or is this value (a row reduce's result)
  int direct;               // reduction without prologue: the param the row op reads, or -1
  LLVMValueRef orow;        // reduction: the output row the prologue is written to
  LLVMValueRef out;         // loop: the output buffer
} Body;

static void body_row_begin(Cg *cg, Body *bd, LLVMValueRef row) {
  int64_t cols = bd->shape->rank ? bd->shape->dim[bd->shape->rank - 1] : 1;
  bd->obase = cg_mul(cg, row, cols);
  for (int k = 0; k < bd->b->n_params; k++) {
    const IrShape *ps = &bd->b->params[k]->shape;
    bd->poff[k] = cg_ew_row_offset(cg, bd->shape, ps, row);
    bd->contig[k] = cg_ew_inner_contiguous(bd->shape, ps) || cols == 1;
  }
}

static LLVMValueRef body_eval(Cg *cg, Body *bd, LLVMValueRef col, int lanes) {
  const IrBody *b = bd->b;
  LLVMValueRef pv[16] = {0}, v[64];
  assert(bd->upto <= 64);
  for (int i = 0; i < bd->upto; i++) {
    const IrNode *x = b->nodes[i];
    if (i == bd->preset) {  // the row op's result, in the output row
      v[i] = bd->preset_val ? bd->preset_val : cg_load(cg, cg->f32, cg_gep(cg, cg->f32, bd->orow, col), lanes);
      continue;
    }
    LLVMValueRef ops[IR_MAX_RANK] = {0};
    int n_read = x->op == IR_OP_DROPOUT_GRAD ? 1 : x->n_in;  // its in[1] is named, not read
    for (int k = 0; k < n_read; k++) {
      const IrNode *y = x->in[k];
      if (!is_param(b, y)) {
        ops[k] = v[y->id];
        continue;
      }
      int p = y->id;
      if (!pv[p]) {
        LLVMTypeRef et = cg_elem_type(cg, y->dtype);
        if (bd->contig[p])
          pv[p] = cg_load(cg, et, cg_gep(cg, et, bd->pbuf[p], cg_add(cg, bd->poff[p], col)), lanes);
        else
          pv[p] = cg_splat(cg, cg_load(cg, et, cg_gep(cg, et, bd->pbuf[p], bd->poff[p]), 1), lanes);
      }
      ops[k] = pv[p];
    }
    if (live_dropout(cg, x)) {
      const IrNode *fwd;
      int mask = ir_body_mask(b, i, &fwd);
      LLVMValueRef stream = bd->streams ? cg_dropout_stream(cg, bd->streams, mask)
                                        : cg_i64(cg, (int64_t)ir_rng_name_hash(fwd->name));
      v[i] = cg_ew_dropout_train(cg, fwd, ops[0], cg_add(cg, bd->obase, col), bd->seed, stream);
    } else {
      v[i] = cg_ew_apply(cg, x, ops);
      assert(v[i]);
    }
  }
  return v[bd->upto - 1];
}

static void loop_cols(Cg *cg, LLVMValueRef col, int lanes, void *ctx) {
  Body *bd = ctx;
  LLVMValueRef r = body_eval(cg, bd, col, lanes);
  cg_store(cg, r, cg_gep(cg, cg->f32, bd->out, cg_add(cg, bd->obase, col)));
}

static LLVMValueRef prologue_value(Cg *cg, LLVMValueRef x, LLVMValueRef col, void *ctx) {
  Body *bd = ctx;  // x: undef (no row in memory), of the lanes wanted
  if (bd->direct < 0) return body_eval(cg, bd, col, cg_lanes(x));
  int p = bd->direct;  // no prologue: the row op reads a param of the row's shape
  return cg_load(cg, cg->f32, cg_gep(cg, cg->f32, bd->pbuf[p], cg_add(cg, bd->poff[p], col)), cg_lanes(x));
}

static void prologue_cols(Cg *cg, LLVMValueRef col, int lanes, void *ctx) {
  Body *bd = ctx;
  LLVMValueRef v;
  if (bd->direct >= 0) {  // the row op reads a param of the row's shape
    int p = bd->direct;
    v = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, bd->pbuf[p], cg_add(cg, bd->poff[p], col)), lanes);
  } else {
    v = body_eval(cg, bd, col, lanes);
  }
  cg_store(cg, v, cg_gep(cg, cg->f32, bd->orow, col));
}

// Epilogue: the whole body again with the row op's node read from the output row (LLVM
// drops the prologue's values that the epilogue does not use); the root overwrites it.
static void epilogue_cols(Cg *cg, LLVMValueRef col, int lanes, void *ctx) {
  Body *bd = ctx;
  cg_store(cg, body_eval(cg, bd, col, lanes), cg_gep(cg, cg->f32, bd->orow, col));
}

// The row op of a reduction body (the one node that is not elementwise).
static const IrNode *row_op(const IrBody *b) {
  for (int i = 0; i < b->n; i++)
    if (!ir_op_is_elementwise(b->nodes[i]->op)) return b->nodes[i];
  assert(0 && "a reduction body has a row op");
  return NULL;
}

// ---------------------------------------------------------------------------------------
static bool body_has_live_dropout(const Cg *cg, const IrBody *b) {
  for (int i = 0; i < b->n; i++)
    if (live_dropout(cg, b->nodes[i])) return true;
  return false;
}

// The name hashes of the body's masks in ir_body_mask's order; how many there are.
static int body_streams(const IrBody *b, uint64_t *streams) {
  int n = 0;
  for (int i = 0; i < b->n; i++) {
    const IrNode *fwd;
    int mask = ir_body_mask(b, i, &fwd);
    if (mask == n) {  // a mask's first use
      if (n < CG_MAX_STREAMS) streams[n] = ir_rng_name_hash(fwd->name);
      n++;
    }
  }
  return n;
}

static void add_args(const IrNode *n, bool seed, bool streams, CgStep *st) {
  st->args[st->n_args++] = cg_arg_node(n->id);
  for (int k = 0; k < n->n_in; k++) st->args[st->n_args++] = cg_arg_node(n->in[k]->id);
  if (seed) st->args[st->n_args++] = cg_arg_seed();
  if (streams) {
    st->n_streams = body_streams(n->body, st->streams);
    st->args[st->n_args++] = (CgArg){CG_ARG_STREAMS, 0, 0};
  }
}

static bool lower_loop_or_reduction(Cg *cg, const IrNode *n, bool reduction, const char *sig,
                                    CgSteps *steps) {
  const IrBody *b = n->body;
  const IrNode *root = reduction ? row_op(b) : ir_body_root(b);
  const IrShape *rs = reduction ? &root->in[0]->shape : &n->shape;  // the row shape
  int64_t cols = rs->rank ? rs->dim[rs->rank - 1] : 1;
  int64_t rows = ir_numel(rs) / (cols ? cols : 1);
  bool seed = body_has_live_dropout(cg, b);
  uint64_t unused[CG_MAX_STREAMS];
  bool streams = seed && body_streams(b, unused) <= CG_MAX_STREAMS;
  char name[96];
  if (!cg_kernel_name(cg, n, sig, name, sizeof name)) {
    cg_kernel_begin(cg, name);
    Body bd = {.b = b, .shape = rs, .upto = b->n, .preset = -1, .direct = -1};
    if (reduction && is_param(b, root->in[0])) bd.direct = root->in[0]->id;
    else if (reduction) bd.upto = root->in[0]->id + 1;
    bd.out = cg_buf(cg, 0);
    for (int k = 0; k < b->n_params; k++) bd.pbuf[k] = cg_buf(cg, 1 + k);
    bd.seed = seed ? cg_buf(cg, 1 + b->n_params) : NULL;
    bd.streams = streams ? cg_buf(cg, 2 + b->n_params) : NULL;
    CgLoop rl;  // out: (rows, cols)
    cg_for_begin(cg, &rl, cg->begin, cg->end, cg_i64(cg, 1), "row");
    body_row_begin(cg, &bd, rl.iv);
    if (!reduction) {
      cg_for_cols(cg, cols, loop_cols, &bd);
    } else if (root->op == IR_OP_REDUCE_SUM || root->op == IR_OP_REDUCE_MEAN ||
               root->op == IR_OP_REDUCE_MAX) {  // out[row] = fold of the body over the row
      CgRowOp op = root->op == IR_OP_REDUCE_MAX ? CG_ROW_MAX : CG_ROW_SUM;
      LLVMValueRef v = cg_row_reduce(cg, op, cg->f32, NULL, cols, prologue_value, &bd);
      if (root->op == IR_OP_REDUCE_MEAN) v = LLVMBuildFDiv(cg->b, v, cg_f32(cg, (double)cols), "mean");
      if (root != ir_body_root(b)) {  // unary epilogue on the row's value
        bd.preset = root->id;
        bd.preset_val = v;
        bd.upto = b->n;
        bd.direct = -1;
        v = body_eval(cg, &bd, cg_i64(cg, 0), 1);
      }
      cg_store(cg, v, cg_gep(cg, cg->f32, bd.out, rl.iv));
    } else {
      bd.orow = cg_gep(cg, cg->f32, bd.out, bd.obase);
      cg_for_cols(cg, cols, prologue_cols, &bd);
      if (root->op == IR_OP_LAYERNORM) {
        assert(is_param(b, root->in[1]) && is_param(b, root->in[2]));
        cg_emit_layernorm_row(cg, cols, ir_attr_float(root, "eps"), bd.orow, bd.orow,
                              bd.pbuf[root->in[1]->id], bd.pbuf[root->in[2]->id]);
      } else {
        cg_emit_softmax_row(cg, root->op == IR_OP_LOG_SOFTMAX, cols, bd.orow, bd.orow);
      }
      if (root != ir_body_root(b)) {
        bd.preset = root->id;
        bd.upto = b->n;
        bd.direct = -1;
        cg_for_cols(cg, cols, epilogue_cols, &bd);
      }
    }
    cg_for_end(cg, &rl);
    cg_kernel_end(cg);
  }
  add_args(n, seed, streams, cg_steps_add(steps, name, rows, n->id));
  return true;
}

// The epilogue the fuse pass recorded (IrGemmEpilogue) maps onto CgGemm's fields.
static bool lower_gemm(Cg *cg, const IrNode *n, const char *sig, CgSteps *steps, Diag *d) {
  const IrGemmEpilogue *e = n->body->gemm;
  const IrNode *mm = n->body->nodes[e->matmul];
  CgGemm g;
  cg_plan_matmul(mm, &g);
  g.scale = (float)e->scale;
  g.act = e->gelu ? CG_ACT_GELU : CG_ACT_NONE;
  g.has_bias = e->bias >= 0;
  g.has_residual = e->residual != IR_GEMM_RESIDUAL_NONE;
  CgArg bias = cg_arg_node(g.has_bias ? n->in[e->bias]->id : n->id);
  CgArg res = cg_arg_node(g.has_residual ? n->in[e->residual_param]->id : n->id);
  // A bf16 GEMM reads this one's result as its A: write its bf16 copy too (CgGemm.words_out).
  g.words_out = cg->bf16_a && cg->bf16_a[n->id] && g.nbatch == 0 && g.N % 2 == 0 && g.c_rs == g.N;
  char name[96], wsig[4112];
  snprintf(wsig, sizeof wsig, "%s%s", sig, g.words_out ? " words" : "");
  cg_kernel_name(cg, n, wsig, name, sizeof name);
  return cg_lower_gemm(cg, &g, name, cg_arg_node(n->in[mm->in[0]->id]->id),
                       cg_arg_node(n->in[mm->in[1]->id]->id), cg_arg_node(n->id), bias, res,
                       n->id, steps, d);
}

bool cg_lower_fused(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  char sig[4096];
  ir_body_str(n, true, sig, sizeof sig);
  if (cg->training) strncat(sig, " training", sizeof sig - strlen(sig) - 1);
  uint64_t streams[CG_MAX_STREAMS];
  if (cg->training && body_streams(n->body, streams) > CG_MAX_STREAMS)  // baked in: by name
    for (int i = 0; i < n->body->n; i++) {
      const IrNode *fwd;
      if (ir_body_mask(n->body, i, &fwd) >= 0) {
        strncat(sig, " ", sizeof sig - strlen(sig) - 1);
        strncat(sig, fwd->name, sizeof sig - strlen(sig) - 1);
      }
    }
  switch (ir_attr_int(n, "kind")) {
  case IR_FUSED_LOOP: return lower_loop_or_reduction(cg, n, false, sig, steps);
  case IR_FUSED_REDUCTION: return lower_loop_or_reduction(cg, n, true, sig, steps);
  case IR_FUSED_GEMM: return lower_gemm(cg, n, sig, steps, d);
  default: return diag_error(d, "%s \"%s\": unknown fusion kind", n->where, n->name);
  }
}
