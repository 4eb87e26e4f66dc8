// GEMM lowering (see lower.h): C[b] = epilogue(A[b] · B[b]) as plan steps.
//   pack:    B (any strides, transposed weights included) copied into column panels of NR
//            floats, contiguous in k and zero-padded at the N tail; `once` when B is a
//            parameter (weights are packed once after binding). When B is an activation
//            that no two work items share (attention), each item packs its own panels
//            instead, just before using them, and there is no pack step.
//   compute: work items are (batch, N-panel group, M-block group) tiles of C, each computed
//            by one item over the whole K (no cross-thread reduction, so results do not
//            depend on how [0, work) is split). Inside an item, K is cut into blocks of KC
//            (partial sums kept in C between blocks) and each (M block, panel) pair calls a
//            register-blocked microkernel.
// The microkernel holds an MR × NR tile of C in MR × NV vector registers (NR = NV·W). For
// each k it loads NV vectors of the packed B panel, broadcasts A(i, k) for each row (A is
// read in place through its strides) and issues MR × NV llvm.fma. After the last K block the
// epilogue (scale, bias, activation, residual) is applied to the register tile before the
// store. M, N and K tails get their own specialised microkernels (fewer rows, fewer
// vectors, masked last vector, shorter k).
// C must not share memory with A, B or the residual (partial sums are stored in C).
// RtTuning.gemm_debug (KILN_GEMM_DEBUG) prints each GEMM's plan; its other gemm_* fields
// (KILN_GEMM_{MR,NV,KC,UNROLL,L2,MIN_ITEMS,FUSE,PREFETCH,PF_LOCALITY}) override the plan's
// choices (for tuning; see gemm_plan).
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/DebugInfo.h>

#include "codegen/compile.h"
#include "codegen/lower.h"

// ---------------------------------------------------------------------------------------
// The plan: tile sizes, blocking and work split, all static.

typedef struct GemmPlan {
  int W;                   // f32 lanes per vector
  int mr, nv, nr;          // microkernel tile: mr rows × nv vectors (nr = nv·W columns)
  int unroll;              // k steps per iteration of the microkernel's loop
  int64_t nmb, npan;       // M blocks of mr rows, N panels of nr columns
  int mtail, ntail;        // rows of the last M block, columns of the last panel (0: full)
  int64_t kc, nkb, ktail;  // K blocks of kc; the last is ktail long (0: full)
  int64_t mgroup, pgroup;  // M blocks and panels per work item
  int64_t nmg, npg;        // groups along M and along N
  int64_t batch, pbatch;   // batch items; distinct B operands (dims where B is not broadcast)
  bool fused_pack;         // each work item packs its own panels (no pack step)
  int64_t pf_lines;        // prefetch: 64-byte lines of the next B slice per microkernel call
  int pf_per_iter;         // prefetches per iteration of the microkernel's k loop (0: none)
  int pf_locality;         // llvm.prefetch locality (2: into L2)
  int pfa_per_iter;        // prefetches of the next M block's A sliver per k iteration (0: none)
  int64_t k_elems;         // bf16, int8: the operands' K (g->K counts words of two, four)
  int64_t panel_k;         // rows of a packed B panel: K (int8: K4 + 2, see cg_gemm_int8.c)
} GemmPlan;

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A tuning override, or the plan's own choice when it is 0.
static int64_t or_default(int64_t tuned, int64_t def) { return tuned ? tuned : def; }

// Microkernel shapes by vector width: registers hold mr·nv accumulators, nv B vectors and
// (without embedded broadcast) one A broadcast.
static void choose_tile(const CgGemm *g, int W, const RtTuning *t, int *mr, int *nv) {
  if (W >= 16) {  // 32 zmm registers, FMA with an embedded broadcast from memory
    *mr = 8, *nv = 3;
    if (cdiv(g->N, W) <= 2)
      *mr = 14, *nv = (int)cdiv(g->N, W);
    else if (cdiv(g->N, W) == 4)
      *mr = 6, *nv = 4;
  } else {  // 16 ymm/xmm registers
    *mr = 6, *nv = 2;
  }
  if (g->M >= 1 && g->M < *mr) {  // few rows: a wider tile keeps enough FMA chains in flight
    int budget = W >= 16 ? 24 : 12, widest = W >= 16 ? 8 : 4;
    *mr = (int)g->M;
    *nv = budget / *mr < widest ? budget / *mr : widest;
    if (*nv > cdiv(g->N, W)) *nv = (int)cdiv(g->N, W);
  }
  *mr = (int)or_default(t->gemm_mr, *mr);
  *nv = (int)or_default(t->gemm_nv, *nv);
}

// Of the ideal time, the fraction 2 and 4 threads reach (the smaller of the two) when the
// work items of the plan (groups of pgroup panels × mgroup M blocks, costing rows × columns)
// are cut into contiguous chunks as the runtime does. The 2-thread chunks are pairs of
// 4-thread chunks (work·2t/4 = work·t/2), so one walk over the items gives both.
static double split_efficiency(const CgGemm *g, const GemmPlan *p) {
  int64_t per_batch = p->npg * p->nmg, work = p->batch * per_batch;
  if (work > 4096) return 1.0;  // many items: contiguous chunks are as good as balanced
  double sum[4] = {0};
  for (int64_t t = 0; t < 4; t++)
    for (int64_t w = work * t / 4; w < work * (t + 1) / 4; w++) {
      int64_t pg = w % per_batch / p->nmg, mg = w % p->nmg;
      int64_t r0 = mg * p->mgroup * p->mr, r1 = (mg + 1) * p->mgroup * p->mr;
      int64_t c0 = pg * p->pgroup * p->nr, c1 = (pg + 1) * p->pgroup * p->nr;
      sum[t] += (double)((r1 < g->M ? r1 : g->M) - r0) * (double)((c1 < g->N ? c1 : g->N) - c0);
    }
  double total = sum[0] + sum[1] + sum[2] + sum[3];
  double worst2 = fmax(sum[0] + sum[1], sum[2] + sum[3]);
  double worst4 = fmax(fmax(sum[0], sum[1]), fmax(sum[2], sum[3]));
  double e2 = worst2 > 0 ? total / (2 * worst2) : 1.0, e4 = worst4 > 0 ? total / (4 * worst4) : 1.0;
  return fmin(e2, e4);
}

// The work split: items of pgroup panels × mgroup M blocks. Panel groups are capped so that
// one K block of them (kc × pgroup·nr floats) stays in half of L2 while the item's M blocks
// pass over it: the other half takes the streams of A's rows and C's tiles, which with a
// slice filling L2 (~0.9 of 1 MiB) evicted it (gemm_bench KILN_BENCH_COLD=1, least CPU time
// of the busier of 2 threads, loaded machine: 960x768x768 374-394 -> 416-417 GFLOP/s,
// 960x768x3072 347-374 -> 379-387, 960x3072x768 unchanged; AVX2 unchanged). Among the splits that balance best on 2 and 4 threads, the one that moves the
// least data: each item reads its rows of A and its panels of B once, so
// npg·|A| + nmg·|B| per batch. Splits into fewer than 8 items count as less balanced, so
// that machines with more threads have work for them too.
static void choose_split(const CgGemm *g, const RtTuning *t, GemmPlan *p) {
  int64_t l2_floats = or_default(t->gemm_l2_floats, 1 << 18);  // 1 MiB
  int64_t pgroup_max = l2_floats / 2 / ((p->kc > 0 ? p->kc : 1) * p->nr);
  // Weights come from memory, a slice ahead of use (gemm_plan's prefetch), except each
  // thread's first slice of a step, which it waits for: one panel per item keeps that
  // short. Items then re-read A, which costs little while A's K block fits in half of L2
  // (gemm_bench KILN_BENCH_COLD=1, 1 thread: 120x3072x768 +6%, 120x768x768 +2%; at
  // M = 960, where A does not fit, 2-4% slower, so not there).
  if (g->b_constant && g->M * p->kc <= l2_floats / 2) pgroup_max = 1;
  int64_t min_work = or_default(t->gemm_min_items, 8);
  // Each candidate's balance and traffic once (split_efficiency walks every work item).
  typedef struct { int64_t npg, nmg; double eff, traffic; } Split;
  Split *c = malloc((size_t)p->npan * (size_t)(p->fused_pack ? 1 : p->nmb) * sizeof *c);
  assert(c);
  int nc = 0;
  double best_eff = -1;
  GemmPlan q = *p;
  for (q.npg = 1; q.npg <= p->npan; q.npg++) {
    q.pgroup = cdiv(p->npan, q.npg);  // distinct group sizes only
    if (cdiv(p->npan, q.pgroup) != q.npg || (q.pgroup > pgroup_max && q.pgroup > 1)) continue;
    for (q.nmg = 1; q.nmg <= (p->fused_pack ? 1 : p->nmb); q.nmg++) {
      q.mgroup = cdiv(p->nmb, q.nmg);
      if (cdiv(p->nmb, q.mgroup) != q.nmg) continue;
      double eff = split_efficiency(g, &q);
      if (p->batch * q.npg * q.nmg < min_work) eff -= 0.1;  // leave items for more threads
      double traffic = (double)q.npg * (double)(g->M * g->K) + (double)q.nmg * (double)(g->N * g->K);
      c[nc++] = (Split){q.npg, q.nmg, eff, traffic};
      best_eff = fmax(best_eff, eff);
    }
  }
  const Split *best = NULL;  // the least traffic among the best balanced
  for (int i = 0; i < nc; i++)
    if (c[i].eff >= best_eff - 0.02 && (!best || c[i].traffic < best->traffic)) best = &c[i];
  bool found = best != NULL;
  if (found) {
    p->npg = best->npg, p->nmg = best->nmg;
    p->pgroup = cdiv(p->npan, best->npg), p->mgroup = cdiv(p->nmb, best->nmg);
  }
  free(c);
  assert(found);
}

static void gemm_plan(const CgGemm *g, int W, const RtTuning *t, GemmPlan *p) {
  memset(p, 0, sizeof *p);
  p->W = W;
  p->panel_k = g->int8 ? g->K + 2 : g->K;
  choose_tile(g, W, t, &p->mr, &p->nv);
  p->nr = p->nv * W;
  p->unroll = (int)or_default(t->gemm_unroll, 4);
  p->nmb = cdiv(g->M, p->mr);
  p->npan = cdiv(g->N, p->nr);
  p->mtail = (int)(g->M % p->mr);
  p->ntail = (int)(g->N % p->nr);
  int64_t kc_max = or_default(t->gemm_kc, 768);
  p->nkb = g->K > 0 ? cdiv(g->K, kc_max) : 1;
  // Equal K blocks where one or two more blocks give them (K = 2048: 4 of 512, not 683 +
  // 683 + 682): a K tail is two more microkernels to compile, for a block 1 shorter.
  for (int64_t nkb = p->nkb; g->K > 0 && !t->gemm_kc && g->K % p->nkb && nkb <= p->nkb + 2; nkb++)
    if (g->K % nkb == 0) p->nkb = nkb;
  p->kc = g->K > 0 ? cdiv(g->K, p->nkb) : 0;
  p->ktail = p->nkb > 1 && g->K % p->kc ? g->K - (p->nkb - 1) * p->kc : 0;
  p->batch = p->pbatch = 1;
  for (int d = 0; d < g->nbatch; d++) {
    p->batch *= g->bdim[d];
    if (g->b_bstride[d]) p->pbatch *= g->bdim[d];
  }
  // B of activations (attention) is packed inside the work items that use it, while it is
  // hot in cache, when no two items share a panel: B not broadcast, M not split.
  p->fused_pack =
      !g->b_constant && p->pbatch == p->batch && g->K > 0 && !t->gemm_no_fuse;
  choose_split(g, t, p);
  // Weights are read from memory once per step (a model's weights do not stay in cache
  // from one run to the next), so the first M block to meet a B slice would wait for it.
  // Each microkernel call prefetches its share of the next slice instead (see
  // emit_tile_call): the item's mgroup calls on a slice cover the next one together. With
  // few M blocks that would take many prefetches per k step; at most nv (part of the slice).
  int64_t iters = p->kc / p->unroll;
  p->pf_lines = cdiv(cdiv(p->kc * p->nr, 16), p->mgroup);
  p->pf_per_iter = !p->fused_pack && iters > 1 && !t->gemm_no_prefetch
                       ? (int)fmin((double)cdiv(p->pf_lines, iters), p->nv)
                       : 0;
  p->pf_locality = t->gemm_pf_locality ? t->gemm_pf_locality - 1 : 2;
  // A whose K block does not fit in L2 (batch 8: 960 rows) is read from L3 by every item,
  // sliver by sliver (mr rows, kc apart): each call also prefetches the next M block's
  // sliver, spread over its k loop (gemm_bench KILN_BENCH_COLD=1, best of 3 interleaved,
  // loaded machine: 960 rows +4-8% on 2 threads). Smaller A stays in L2: no prefetch (at
  // 256 rows it measured -2..-3%, within the noise), and M = 120 plans are unchanged.
  // bf16 A is its packed words, a word where f32 has a float: the same slivers (gemm_bench
  // KILN_BENCH_COLD=1, interleaved: bf16 960x3072x768 2 threads 854-858 -> 868-878
  // GFLOP/s, 960x768x3072 783-786 -> 791-792). int8 rows end in a scale: not yet.
  p->pfa_per_iter = !p->fused_pack && iters > 1 && g->a_cs == 1 && !g->int8 &&
                            g->M * p->kc > or_default(t->gemm_l2_floats, 1 << 18) &&
                            !t->gemm_no_prefetch
                        ? (int)cdiv(p->mr * cdiv(p->kc, 16), iters)
                        : 0;
  if (t->gemm_debug)
    fprintf(stderr,
            "gemm %lldx%lldx%lld: tile %dx%d kc %lld (%lld blocks) groups %lld m-blocks x %lld "
            "panels, work %lld%s, prefetch %d/iter, A %d/iter\n",
            (long long)g->M, (long long)g->N, (long long)g->K, p->mr, p->nr, (long long)p->kc,
            (long long)p->nkb, (long long)p->mgroup, (long long)p->pgroup,
            (long long)(p->batch * p->npg * p->nmg), p->fused_pack ? ", packing fused" : "",
            p->pf_per_iter, p->pfa_per_iter);
}

// ---------------------------------------------------------------------------------------
// IR helpers: masks, masked loads and stores, helper functions beside a kernel.

// <W x i1> with the first `lanes` lanes set.
static LLVMValueRef lane_mask(Cg *cg, int lanes) {
  LLVMValueRef m[64];
  assert(cg->W <= 64);
  for (int i = 0; i < cg->W; i++) m[i] = LLVMConstInt(cg->i1, i < lanes, 0);
  return LLVMConstVector(m, (unsigned)cg->W);
}

static LLVMValueRef masked_intrinsic(Cg *cg, const char *name, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMTypeRef over[2] = {cg->vf, cg->ptr};
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, over, 2);
  LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, over, 2);
  return LLVMBuildCall2(cg->b, fty, fn, args, (unsigned)n, "");
}

// `lanes` contiguous floats at ptr as a <W x float>; lanes past them are 0.
LLVMValueRef cg_gemm_load_lanes(Cg *cg, LLVMValueRef ptr, int lanes) {
  if (lanes == cg->W) return cg_load(cg, cg->f32, ptr, cg->W);
  LLVMValueRef args[4] = {ptr, cg_i32(cg, 4), lane_mask(cg, lanes), LLVMConstNull(cg->vf)};
  return masked_intrinsic(cg, "llvm.masked.load", args, 4);
}

static void store_lanes(Cg *cg, LLVMValueRef v, LLVMValueRef ptr, int lanes) {
  if (lanes == cg->W) {
    cg_store(cg, v, ptr);
    return;
  }
  LLVMValueRef args[4] = {v, ptr, cg_i32(cg, 4), lane_mask(cg, lanes)};
  masked_intrinsic(cg, "llvm.masked.store", args, 4);
}

static LLVMValueRef gep(Cg *cg, LLVMValueRef base, LLVMValueRef idx) {
  return cg_gep(cg, cg->f32, base, idx);
}

static LLVMValueRef gepc(Cg *cg, LLVMValueRef base, int64_t idx) {
  return idx ? cg_gep(cg, cg->f32, base, cg_i64(cg, idx)) : base;
}

static LLVMValueRef mul_c(Cg *cg, LLVMValueRef x, int64_t c) {
  return c == 1 ? x : LLVMBuildMul(cg->b, x, cg_i64(cg, c), "");
}

static LLVMValueRef add(Cg *cg, LLVMValueRef x, LLVMValueRef y) {
  return LLVMBuildAdd(cg->b, x, y, "");
}

// An internal helper function with the attributes (target CPU, features, vector width) of
// the kernel being emitted; the builder is left at its entry.
static LLVMValueRef helper_begin(Cg *cg, LLVMValueRef kernel, const char *name, LLVMTypeRef ty) {
  LLVMValueRef fn = LLVMAddFunction(cg->mod, name, ty);
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  LLVMAttributeRef attrs[32];
  unsigned n = LLVMGetAttributeCountAtIndex(kernel, LLVMAttributeFunctionIndex);
  assert(n <= 32);
  LLVMGetAttributesAtIndex(kernel, LLVMAttributeFunctionIndex, attrs);
  for (unsigned i = 0; i < n; i++)
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, attrs[i]);
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
  return fn;
}

// ---------------------------------------------------------------------------------------
// The microkernel
//   void mk(ptr a, ptr bp, ptr c, ptr bias, ptr res, i32 flags, ptr pf)
// a = &A(i0, k0), bp = &packed panel row k0, c = &C(i0, j0), bias = &bias[j0],
// res = &R(i0, j0), pf = where this call's prefetches start (see mk_prefetch). C(rows × cols) = (flags & MK_ACCUMULATE ? C : 0) + A(rows × kc) · panel,
// then the epilogue when flags & MK_LAST.

enum { MK_ACCUMULATE = 1, MK_LAST = 2 };
enum { MK_MAX_ROWS = 32, MK_MAX_VECS = 8 };

typedef struct Tile {
  int rows, nv, last_lanes;  // rows × nv vectors; the last vector has last_lanes columns
  LLVMValueRef acc[MK_MAX_ROWS][MK_MAX_VECS];
} Tile;

static int tile_lanes(const Cg *cg, const Tile *t, int v) {
  return v == t->nv - 1 ? t->last_lanes : cg->W;
}

// One k step: acc[r][v] += A(r, k) · panel(k, v·W ..)  (A broadcast, panel row loaded).
static void mk_step(Cg *cg, const CgGemm *g, const GemmPlan *p, Tile *t, LLVMValueRef a,
                    LLVMValueRef bp, LLVMValueRef k) {
  LLVMValueRef bv[MK_MAX_VECS];
  LLVMValueRef brow = gep(cg, bp, mul_c(cg, k, p->nr));  // (nr) floats of panel row k
  if (g->bf16 || g->int8) {  // words of two bf16 / four int8 in A and the panel
    LLVMValueRef bw[MK_MAX_VECS][4];  // (codegen/cg_gemm_bf16.c, cg_gemm_int8.c)
    for (int v = 0; v < t->nv; v++) {
      LLVMValueRef words = cg_load(cg, cg->i32, gepc(cg, brow, (int64_t)v * cg->W), cg->W);
      if (g->int8) cg_gemm_int8_prepare_b(cg, words, bw[v]);
      else cg_gemm_bf16_prepare_b(cg, words, bw[v]);
    }
    LLVMValueRef acol = gep(cg, a, k);  // A(0, k), a_cs == 1
    for (int r = 0; r < t->rows; r++) {
      LLVMValueRef aw = cg_load(cg, cg->i32, gepc(cg, acol, r * g->a_rs), 1);
      for (int v = 0; v < t->nv; v++)
        t->acc[r][v] = g->int8 ? cg_gemm_int8_dot(cg, t->acc[r][v], aw, bw[v])
                               : cg_gemm_bf16_dot(cg, t->acc[r][v], aw, bw[v]);
    }
    return;
  }
  for (int v = 0; v < t->nv; v++)
    bv[v] = cg_load(cg, cg->f32, gepc(cg, brow, (int64_t)v * cg->W), cg->W);
  LLVMValueRef acol = gep(cg, a, mul_c(cg, k, g->a_cs));  // A(0, k)
  for (int r = 0; r < t->rows; r++) {
    LLVMValueRef ar = cg_splat(cg, cg_load(cg, cg->f32, gepc(cg, acol, r * g->a_rs), 1), cg->W);
    for (int v = 0; v < t->nv; v++) t->acc[r][v] = cg_fma(cg, ar, bv[v], t->acc[r][v]);
  }
}

// Phis in `bb` for every accumulator, entered from `from` with the tile's current values.
static void tile_phis(Cg *cg, Tile *t, LLVMBasicBlockRef from,
                      LLVMValueRef phi[MK_MAX_ROWS][MK_MAX_VECS]) {
  for (int r = 0; r < t->rows; r++)
    for (int v = 0; v < t->nv; v++) {
      phi[r][v] = LLVMBuildPhi(cg->b, cg->vf, "acc");
      LLVMAddIncoming(phi[r][v], &t->acc[r][v], &from, 1);
      t->acc[r][v] = phi[r][v];
    }
}

static void tile_phis_close(Tile *t, LLVMBasicBlockRef from,
                            LLVMValueRef phi[MK_MAX_ROWS][MK_MAX_VECS]) {
  for (int r = 0; r < t->rows; r++)
    for (int v = 0; v < t->nv; v++) LLVMAddIncoming(phi[r][v], &t->acc[r][v], &from, 1);
}

static LLVMValueRef phi_pair(Cg *cg, LLVMValueRef x, LLVMBasicBlockRef bx, LLVMValueRef y,
                             LLVMBasicBlockRef by) {
  LLVMValueRef ph = LLVMBuildPhi(cg->b, LLVMTypeOf(x), "");
  LLVMAddIncoming(ph, &x, &bx, 1);
  LLVMAddIncoming(ph, &y, &by, 1);
  return ph;
}

// Iteration it of the k loop prefetches lines [it·n, (it + 1)·n) at pf (n = pf_per_iter).
// Plain (not inbounds) GEPs: pf may point past the buffer; a prefetch never faults.
static void mk_prefetch(Cg *cg, const GemmPlan *p, LLVMValueRef pf, LLVMValueRef it) {
  LLVMValueRef line0 = LLVMBuildMul(cg->b, it, cg_i64(cg, (int64_t)p->pf_per_iter * 64), "");
  for (int j = 0; j < p->pf_per_iter; j++) {
    LLVMValueRef off = add(cg, line0, cg_i64(cg, (int64_t)j * 64));
    LLVMValueRef args[4] = {LLVMBuildGEP2(cg->b, cg->i8, pf, &off, 1, "pf"), cg_i32(cg, 0),
                            cg_i32(cg, p->pf_locality), cg_i32(cg, 1)};
    cg_intrinsic(cg, "llvm.prefetch", cg->ptr, args, 4);
  }
}

// Iteration it of the k loop prefetches lines [it·n, (it + 1)·n) (n = pfa_per_iter) of the
// next M block's A sliver, rows mr .. 2mr-1 from a: line l is row l % mr, floats 16·(l / mr).
static void mk_prefetch_a(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef a,
                          LLVMValueRef it) {
  LLVMValueRef line0 = mul_c(cg, it, p->pfa_per_iter);
  for (int j = 0; j < p->pfa_per_iter; j++) {
    LLVMValueRef l = add(cg, line0, cg_i64(cg, j));
    LLVMValueRef row = add(cg, LLVMBuildURem(cg->b, l, cg_i64(cg, p->mr), ""), cg_i64(cg, p->mr));
    LLVMValueRef off = add(cg, mul_c(cg, row, g->a_rs),
                           mul_c(cg, LLVMBuildUDiv(cg->b, l, cg_i64(cg, p->mr), ""), 16));
    LLVMValueRef args[4] = {LLVMBuildGEP2(cg->b, cg->f32, a, &off, 1, "pfa"), cg_i32(cg, 0),
                            cg_i32(cg, p->pf_locality), cg_i32(cg, 1)};
    cg_intrinsic(cg, "llvm.prefetch", cg->ptr, args, 4);
  }
}

// The k loop over kc steps: a loop of `unroll` steps per iteration, then the remainder.
static void mk_k_loop(Cg *cg, const CgGemm *g, const GemmPlan *p, Tile *t, LLVMValueRef a,
                      LLVMValueRef bp, LLVMValueRef pf, int64_t kc) {
  int64_t u = p->unroll, iters = kc / u;
  if (iters > 1) {
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b), body = cg_block(cg, "k"),
                      done = cg_block(cg, "k.done");
    LLVMBuildBr(cg->b, body);
    LLVMPositionBuilderAtEnd(cg->b, body);
    LLVMValueRef k = LLVMBuildPhi(cg->b, cg->i64, "k"), zero = cg_i64(cg, 0);
    LLVMAddIncoming(k, &zero, &pre, 1);
    LLVMValueRef phi[MK_MAX_ROWS][MK_MAX_VECS];
    tile_phis(cg, t, pre, phi);
    if (p->pf_per_iter) mk_prefetch(cg, p, pf, LLVMBuildUDiv(cg->b, k, cg_i64(cg, u), "it"));
    if (p->pfa_per_iter && t->rows == p->mr)
      mk_prefetch_a(cg, g, p, a, LLVMBuildUDiv(cg->b, k, cg_i64(cg, u), "it"));
    for (int64_t s = 0; s < u; s++) mk_step(cg, g, p, t, a, bp, add(cg, k, cg_i64(cg, s)));
    LLVMValueRef next = LLVMBuildAdd(cg->b, k, cg_i64(cg, u), "k.next");
    LLVMAddIncoming(k, &next, &body, 1);
    tile_phis_close(t, body, phi);
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, next, cg_i64(cg, iters * u), ""), body,
                    done);
    LLVMPositionBuilderAtEnd(cg->b, done);
  } else {
    iters = 0;
  }
  for (int64_t s = iters * u; s < kc; s++) mk_step(cg, g, p, t, a, bp, cg_i64(cg, s));
}

// GELU(x) with a branch around all but its central form when every lane takes that form
// (|x| < 1.25): the same bits as cg_gelu either way. Inputs of a model's intermediate layer
// are mostly narrow (VisualBERT-base with its initial weights: std 0.55, no lane of 68% of
// the vectors past 1.25); with wider ones the branch costs a compare and a test a vector.
static LLVMValueRef gelu_branched(Cg *cg, LLVMValueRef x) {
  LLVMBasicBlockRef central = cg_block(cg, "gelu.central"), full = cg_block(cg, "gelu.full"),
                    join = cg_block(cg, "gelu.join");
  LLVMBuildCondBr(cg->b, cg_gelu_all_central(cg, x), central, full);
  LLVMPositionBuilderAtEnd(cg->b, central);
  LLVMValueRef xc = cg_gelu_central(cg, x);
  LLVMBuildBr(cg->b, join);
  LLVMPositionBuilderAtEnd(cg->b, full);
  LLVMValueRef xf = cg_gelu(cg, x);
  LLVMBuildBr(cg->b, join);
  LLVMPositionBuilderAtEnd(cg->b, join);
  return phi_pair(cg, xc, central, xf, full);
}

static void tile_store(Cg *cg, const CgGemm *g, const Tile *t, LLVMValueRef c, int r, int v,
                       LLVMValueRef x) {
  store_lanes(cg, x, gepc(cg, c, r * g->c_rs + (int64_t)v * cg->W), tile_lanes(cg, t, v));
}

// base + idx floats; base itself when idx is the constant 0 (as gepc).
static LLVMValueRef gepv(Cg *cg, LLVMValueRef base, LLVMValueRef idx) {
  return LLVMIsAConstantInt(idx) && !LLVMConstIntGetSExtValue(idx) ? base : gep(cg, base, idx);
}

// Gives a loop latch's branch llvm.loop.unroll.disable: loops whose bodies are large on
// purpose (the GELU epilogue's row loop) or unrolled by hand (the k loop) are not unrolled
// further, and O2 skips their unroll analysis.
static void loop_unroll_disable(Cg *cg, LLVMValueRef latch_br) {
  LLVMMetadataRef flag = LLVMMDStringInContext2(cg->ctx, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef self = LLVMTemporaryMDNode(cg->ctx, NULL, 0);
  LLVMMetadataRef ops[2] = {self, LLVMMDNodeInContext2(cg->ctx, &flag, 1)};
  LLVMMetadataRef id = LLVMMDNodeInContext2(cg->ctx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(self, id);  // a loop ID's first operand is itself
  LLVMSetMetadata(latch_br, LLVMGetMDKindIDInContext(cg->ctx, "llvm.loop", 9),
                  LLVMMetadataAsValue(cg->ctx, id));
}

// The epilogue's per-column operands of one vector of the tile (columns col .. col + lanes,
// col an i64, constant or a loop's): the bias and (int8) the panel's compensations and scales.
typedef struct EpiCols {
  LLVMValueRef col, bias, comp, sb;
  int lanes;
} EpiCols;

static EpiCols epilogue_cols(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef col,
                             int lanes, LLVMValueRef bias, LLVMValueRef bp, int64_t kc) {
  EpiCols e = {.col = col, .lanes = lanes};
  if (g->int8) {
    e.comp = cg_load(cg, cg->i32, gepv(cg, bp, add(cg, cg_i64(cg, kc * p->nr), col)), cg->W);
    e.sb = cg_load(cg, cg->f32, gepv(cg, bp, add(cg, cg_i64(cg, (kc + 1) * p->nr), col)), cg->W);
  }
  if (g->has_bias) e.bias = cg_gemm_load_lanes(cg, gepv(cg, bias, col), lanes);
  return e;
}

// The epilogue of one vector (e's columns) of tile row r (an i64, constant or the row
// loop's), x its sum: (int8: x = ((float)(x - comp_j) · scale_a(i)) · scale_b(j), the row
// scales after the last K block's kc words of A, compensations and scales after its kc
// panel rows) t = scale·x; t += bias[j]; t = act(t); t += R(i, j).
static LLVMValueRef epilogue_vec(Cg *cg, const CgGemm *g, const EpiCols *e, LLVMValueRef x,
                                 LLVMValueRef r, LLVMValueRef res, LLVMValueRef a, int64_t kc) {
  if (g->int8)
    x = cg_gemm_int8_dequant(cg, x, e->comp,
                             cg_load(cg, cg->f32, gepv(cg, a, add(cg, mul_c(cg, r, g->a_rs),
                                                                  cg_i64(cg, kc))), 1),
                             e->sb);
  if (g->scale != 1.0f) x = LLVMBuildFMul(cg->b, x, cg_const_like(cg, x, g->scale), "scaled");
  if (g->has_bias) x = LLVMBuildFAdd(cg->b, x, e->bias, "biased");
  if (g->act == CG_ACT_GELU) x = gelu_branched(cg, x);
  if (g->has_residual) {
    LLVMValueRef rp = gepv(cg, res, add(cg, mul_c(cg, r, g->c_rs), e->col));
    x = LLVMBuildFAdd(cg->b, x, cg_gemm_load_lanes(cg, rp, e->lanes), "residual");
  }
  return x;
}

// The epilogue on the register tile, each vector stored to C as soon as it is done.
// Storing at once keeps one vector's temporaries live beside the accumulators not yet done,
// instead of every finished vector until a store block: with a GELU the 8x3 tile spilled
// most of its temporaries.
static void mk_epilogue_store(Cg *cg, const CgGemm *g, const GemmPlan *p, const Tile *t,
                              LLVMValueRef c, LLVMValueRef bias, LLVMValueRef res, LLVMValueRef a,
                              LLVMValueRef bp, int64_t kc) {
  EpiCols e[MK_MAX_VECS];
  for (int v = 0; v < t->nv; v++)
    e[v] = epilogue_cols(cg, g, p, cg_i64(cg, (int64_t)v * cg->W), tile_lanes(cg, t, v), bias, bp, kc);
  for (int r = 0; r < t->rows; r++)
    for (int v = 0; v < t->nv; v++)
      tile_store(cg, g, t, c, r, v, epilogue_vec(cg, g, &e[v], t->acc[r][v], cg_i64(cg, r), res, a, kc));
}

// The epilogue of the vector at columns col (lanes wide) of tile row r, stored in C: reloaded,
// finished, stored back (exact).
static void epilogue_in_c(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef c,
                          LLVMValueRef bias, LLVMValueRef res, LLVMValueRef a, LLVMValueRef bp,
                          int64_t kc, LLVMValueRef r, LLVMValueRef col, int lanes) {
  EpiCols e = epilogue_cols(cg, g, p, col, lanes, bias, bp, kc);
  LLVMValueRef cp = gepv(cg, c, add(cg, mul_c(cg, r, g->c_rs), col));
  LLVMValueRef x = cg_gemm_load_lanes(cg, cp, lanes);
  store_lanes(cg, epilogue_vec(cg, g, &e, x, r, res, a, kc), cp, lanes);
}

// The same epilogue on the tile already stored to C, as loops over its rows and its full
// vectors, for the GELU epilogue: its ~100 operations a vector, unrolled over
// the 24 vectors of an 8x3 tile, made the microkernel a fifth of a BERT module's IR and of
// its compile time, and a row's nv copies still ~half of a few-row GEMM's (nv up to 8). So
// one copy for the full vectors (their bias loaded in the loop) and one for a partial last.
static void mk_epilogue_rows(Cg *cg, const CgGemm *g, const GemmPlan *p, const Tile *t,
                             LLVMValueRef c, LLVMValueRef bias, LLVMValueRef res, LLVMValueRef a,
                             LLVMValueRef bp, int64_t kc) {
  int full = t->last_lanes == cg->W ? t->nv : t->nv - 1;
  CgLoop r;
  cg_for_begin(cg, &r, cg_i64(cg, 0), cg_i64(cg, t->rows), cg_i64(cg, 1), "epi.row");
  if (full == 1) {
    epilogue_in_c(cg, g, p, c, bias, res, a, bp, kc, r.iv, cg_i64(cg, 0), cg->W);
  } else if (full > 1) {
    CgLoop v;
    cg_for_begin(cg, &v, cg_i64(cg, 0), cg_i64(cg, (int64_t)full * cg->W), cg_i64(cg, cg->W), "epi.vec");
    epilogue_in_c(cg, g, p, c, bias, res, a, bp, kc, r.iv, v.iv, cg->W);
    cg_for_end(cg, &v);
    loop_unroll_disable(cg, LLVMGetBasicBlockTerminator(LLVMGetIncomingBlock(v.iv, 1)));
  }
  if (full < t->nv)
    epilogue_in_c(cg, g, p, c, bias, res, a, bp, kc, r.iv, cg_i64(cg, (int64_t)full * cg->W), t->last_lanes);
  cg_for_end(cg, &r);
  loop_unroll_disable(cg, LLVMGetBasicBlockTerminator(LLVMGetIncomingBlock(r.iv, 1)));
}

// i1: flags & MK_LAST.
static LLVMValueRef mk_last(Cg *cg, LLVMValueRef flags) {
  return LLVMBuildICmp(cg->b, LLVMIntNE, LLVMBuildAnd(cg->b, flags, cg_i32(cg, MK_LAST), ""),
                       cg_i32(cg, 0), "last");
}

static LLVMValueRef emit_microkernel(Cg *cg, LLVMValueRef kernel, const CgGemm *g,
                                     const GemmPlan *p, const char *name, int rows, int cols,
                                     int64_t kc) {
  LLVMTypeRef params[7] = {cg->ptr, cg->ptr, cg->ptr, cg->ptr, cg->ptr, cg->i32, cg->ptr};
  LLVMValueRef fn = helper_begin(cg, kernel, name, LLVMFunctionType(cg->void_t, params, 7, 0));
  for (unsigned i = 0; i < 5; i++) {
    unsigned kind = LLVMGetEnumAttributeKindForName("noalias", 7);
    if (i != 2 && i != 4)
      LLVMAddAttributeAtIndex(fn, i + 1, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
  }
  LLVMValueRef a = LLVMGetParam(fn, 0), bp = LLVMGetParam(fn, 1), c = LLVMGetParam(fn, 2);
  LLVMValueRef bias = LLVMGetParam(fn, 3), res = LLVMGetParam(fn, 4), flags = LLVMGetParam(fn, 5);
  LLVMValueRef pf = LLVMGetParam(fn, 6);
  Tile t = {.rows = rows, .nv = (int)cdiv(cols, cg->W)};
  t.last_lanes = cols - (t.nv - 1) * cg->W;
  assert(rows <= MK_MAX_ROWS && t.nv <= MK_MAX_VECS);

  // acc = flags & MK_ACCUMULATE ? C tile : 0   (C: rows × cols at row stride c_rs)
  LLVMBasicBlockRef entry = LLVMGetInsertBlock(cg->b), load = cg_block(cg, "c.load"),
                    start = cg_block(cg, "start");
  LLVMValueRef accumulate =
      LLVMBuildICmp(cg->b, LLVMIntNE, LLVMBuildAnd(cg->b, flags, cg_i32(cg, MK_ACCUMULATE), ""),
                    cg_i32(cg, 0), "accumulate");
  LLVMBuildCondBr(cg->b, accumulate, load, start);
  LLVMPositionBuilderAtEnd(cg->b, load);
  LLVMValueRef loaded[MK_MAX_ROWS][MK_MAX_VECS];
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < t.nv; v++)
      loaded[r][v] =
          cg_gemm_load_lanes(cg, gepc(cg, c, r * g->c_rs + (int64_t)v * cg->W), tile_lanes(cg, &t, v));
  LLVMBuildBr(cg->b, start);
  LLVMPositionBuilderAtEnd(cg->b, start);
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < t.nv; v++)
      t.acc[r][v] = phi_pair(cg, loaded[r][v], load, LLVMConstNull(cg->vf), entry);

  mk_k_loop(cg, g, p, &t, a, bp, pf, kc);

  // GELU: store, then if (flags & MK_LAST) the epilogue's row loop. Other
  // epilogues: if (flags & MK_LAST) epilogue and store, else store.
  bool rows_loop = g->act == CG_ACT_GELU;
  bool has_epilogue = g->scale != 1.0f || g->has_bias || g->act != CG_ACT_NONE ||
                      g->has_residual || g->int8;
  if (has_epilogue && !rows_loop) {
    LLVMBasicBlockRef epi = cg_block(cg, "epilogue"), store = cg_block(cg, "store");
    LLVMBuildCondBr(cg->b, mk_last(cg, flags), epi, store);
    LLVMPositionBuilderAtEnd(cg->b, epi);
    mk_epilogue_store(cg, g, p, &t, c, bias, res, a, bp, kc);
    LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, store);
  }
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < t.nv; v++) tile_store(cg, g, &t, c, r, v, t.acc[r][v]);
  if (rows_loop) {
    LLVMBasicBlockRef epi = cg_block(cg, "epilogue"), done = cg_block(cg, "done");
    LLVMBuildCondBr(cg->b, mk_last(cg, flags), epi, done);
    LLVMPositionBuilderAtEnd(cg->b, epi);
    mk_epilogue_rows(cg, g, p, &t, c, bias, res, a, bp, kc);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
  }
  LLVMBuildRetVoid(cg->b);
  return fn;
}

// ---------------------------------------------------------------------------------------
// Batch offsets. Batch item bi runs over bdim[0..nbatch) row-major.

// Element offset of batch item bi in an operand with the given batch strides.
static LLVMValueRef batch_offset(Cg *cg, const CgGemm *g, LLVMValueRef bi, const int64_t *stride) {
  LLVMValueRef off = cg_i64(cg, 0), rest = bi;
  for (int d = g->nbatch - 1; d >= 0; d--) {
    LLVMValueRef dim = cg_i64(cg, g->bdim[d]);
    if (stride[d]) off = add(cg, off, mul_c(cg, LLVMBuildURem(cg->b, rest, dim, ""), stride[d]));
    if (d) rest = LLVMBuildUDiv(cg->b, rest, dim, "");
  }
  return off;
}


void cg_gemm_pack_a_step(Cg *cg, const CgGemm *g, const char *name, int64_t kwords,
                         int64_t row_words, int rows, CgPackA emit, CgArg *a, int node,
                         CgSteps *steps, CgGemm *w, const CgArg *ready) {
  assert(rows >= 1);
  int64_t batch = 1;
  for (int d = 0; d < g->nbatch; d++) batch *= g->bdim[d];
  *w = *g;
  w->K = kwords;
  w->a_rs = row_words, w->a_cs = 1;
  int64_t s = g->M * row_words;  // packed A: (batch..., M, row_words) words
  for (int d = g->nbatch - 1; d >= 0; d--) {
    w->a_bstride[d] = s;
    s *= g->bdim[d];
  }
  if (ready) {
    *a = *ready;
    return;
  }
  char fn[112];
  snprintf(fn, sizeof fn, "%s.pack_a", name);
  // GEMMs of one kernel over the same A (Q, K and V of a layer) share its packed copy: the
  // step packed it earlier, and values are written once a run, so it still holds.
  for (int i = 0; row_words > 0 && a->kind == CG_ARG_NODE && i < steps->n; i++) {
    const CgStep *st = &steps->v[i];
    if (!strcmp(st->fn, fn) && st->args[0].kind == CG_ARG_NODE && st->args[0].id == a->id) {
      *a = st->args[1];
      return;
    }
  }
  int scratch = cg_steps_new_scratch(steps);
  CgArg packed = cg_arg_scratch(scratch, (size_t)(s > 0 ? s : 1) * sizeof(int32_t));
  int64_t groups = cdiv(g->M, rows);  // work items a batch item
  if (row_words > 0) {
    if (!LLVMGetNamedFunction(cg->mod, fn)) {  // work item bi·groups + ig: rows ig·rows.. of bi
      cg_kernel_begin(cg, fn);
      LLVMValueRef a_buf = cg_buf(cg, 0), copy = cg_buf(cg, 1);
      CgLoop r;
      cg_for_begin(cg, &r, cg->begin, cg->end, cg_i64(cg, 1), "row");
      LLVMValueRef bi = LLVMBuildUDiv(cg->b, r.iv, cg_i64(cg, groups), "bi");
      LLVMValueRef i = mul_c(cg, LLVMBuildURem(cg->b, r.iv, cg_i64(cg, groups), "ig"), rows);
      LLVMValueRef src = gep(cg, a_buf, add(cg, batch_offset(cg, g, bi, g->a_bstride),
                                            mul_c(cg, i, g->a_rs)));  // A(i, 0)
      LLVMValueRef dst = cg_gep(cg, cg->i32, copy,
                                mul_c(cg, add(cg, mul_c(cg, bi, g->M), i), row_words));
      int tail = (int)(g->M % rows);
      if (!tail) {
        emit(cg, g, src, dst, rows);
      } else {  // the batch item's last group: its M % rows rows
        LLVMBasicBlockRef last = cg_block(cg, "rows.tail"), full = cg_block(cg, "rows.full"),
                          join = cg_block(cg, "rows.join");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, i, cg_i64(cg, g->M - tail), ""),
                        last, full);
        LLVMPositionBuilderAtEnd(cg->b, last);
        emit(cg, g, src, dst, tail);
        LLVMBuildBr(cg->b, join);
        LLVMPositionBuilderAtEnd(cg->b, full);
        emit(cg, g, src, dst, rows);
        LLVMBuildBr(cg->b, join);
        LLVMPositionBuilderAtEnd(cg->b, join);
      }
      cg_for_end(cg, &r);
      cg_kernel_end(cg);
    }
    CgStep *st = cg_steps_add(steps, fn, batch * groups, node);
    st->args[st->n_args++] = *a;
    st->args[st->n_args++] = packed;
  }
  *a = packed;
}

// Index of batch item bi's B among the distinct (packed) B operands: bi with the dims where
// B is broadcast (stride 0) dropped.
static LLVMValueRef packed_index(Cg *cg, const CgGemm *g, LLVMValueRef bi) {
  LLVMValueRef idx = cg_i64(cg, 0), rest = bi;
  int64_t scale = 1;
  for (int d = g->nbatch - 1; d >= 0; d--) {
    LLVMValueRef dim = cg_i64(cg, g->bdim[d]);
    if (g->b_bstride[d]) {
      idx = add(cg, idx, mul_c(cg, LLVMBuildURem(cg->b, rest, dim, ""), scale));
      scale *= g->bdim[d];
    }
    if (d) rest = LLVMBuildUDiv(cg->b, rest, dim, "");
  }
  return idx;
}

// Element offset in B of distinct B operand pi (the inverse of packed_index).
static LLVMValueRef packed_b_offset(Cg *cg, const CgGemm *g, LLVMValueRef pi) {
  LLVMValueRef off = cg_i64(cg, 0), rest = pi;
  for (int d = g->nbatch - 1; d >= 0; d--) {
    if (!g->b_bstride[d]) continue;
    LLVMValueRef dim = cg_i64(cg, g->bdim[d]);
    off = add(cg, off, mul_c(cg, LLVMBuildURem(cg->b, rest, dim, ""), g->b_bstride[d]));
    rest = LLVMBuildUDiv(cg->b, rest, dim, "");
  }
  return off;
}

// ---------------------------------------------------------------------------------------
// The packing kernel. Work item w = (distinct B pi, panel pn) fills
//   packed[w] (K × nr): packed[w][k][jj] = B(k, pn·nr + jj), 0 past N.
// bufs: B, packed.

static void emit_pack_rows(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef src,
                           LLVMValueRef dst, int cols) {
  // b_cs == 1: each panel row is nr contiguous floats of B (fewer at the N tail).
  CgLoop k;
  cg_for_begin(cg, &k, cg_i64(cg, 0), cg_i64(cg, g->K), cg_i64(cg, 1), "k");
  LLVMValueRef s = gep(cg, src, mul_c(cg, k.iv, g->b_rs)), t = gep(cg, dst, mul_c(cg, k.iv, p->nr));
  for (int v = 0; v < p->nv; v++) {
    int lanes = cols - v * cg->W;
    lanes = lanes < 0 ? 0 : lanes > cg->W ? cg->W : lanes;
    LLVMValueRef x =
        lanes ? cg_gemm_load_lanes(cg, gepc(cg, s, (int64_t)v * cg->W), lanes) : LLVMConstNull(cg->vf);
    cg_store(cg, x, gepc(cg, t, (int64_t)v * cg->W));
  }
  cg_for_end(cg, &k);
}

// <W x i32> shuffle mask of the transpose stage at distance h (see cg_gemm_transpose).
static LLVMValueRef stage_mask(Cg *cg, int h, bool upper) {
  LLVMValueRef m[64];
  for (int l = 0; l < cg->W; l++) {
    int from = (l & h) == 0 ? (upper ? l + h : l) : (upper ? cg->W + l : cg->W + l - h);
    m[l] = cg_i32(cg, from);
  }
  return LLVMConstVector(m, (unsigned)cg->W);
}

// Transposes the W × W block held in rows v[0..W) in place: log2 W stages; at distance h,
// rows i and i+h (i & h == 0) exchange the lanes l & h of one with the lanes l & ~h of the
// other (Eklundh's recursive block swap), one two-source shuffle per row per stage.
void cg_gemm_transpose(Cg *cg, LLVMValueRef *v) {
  for (int h = cg->W / 2; h >= 1; h /= 2)
    for (int i = 0; i < cg->W; i++) {
      if (i & h) continue;
      LLVMValueRef lo = LLVMBuildShuffleVector(cg->b, v[i], v[i + h], stage_mask(cg, h, false), "");
      LLVMValueRef hi = LLVMBuildShuffleVector(cg->b, v[i], v[i + h], stage_mask(cg, h, true), "");
      v[i] = lo, v[i + h] = hi;
    }
}

// Rows k0 .. k0+klen of the columns [j0, j0 + W) of a transposed panel (`valid` of them
// are columns of B, the rest zeros): column j is klen contiguous floats of B at
// src + j·b_cs + k0, transposed in registers into panel rows k0.. at dst + k0·nr + j0.
static void pack_transposed_block(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef src,
                                  LLVMValueRef dst, LLVMValueRef j0, int valid, LLVMValueRef k0,
                                  int klen) {
  LLVMValueRef s = gep(cg, src, add(cg, k0, mul_c(cg, j0, g->b_cs)));
  LLVMValueRef t = gep(cg, dst, add(cg, mul_c(cg, k0, p->nr), j0));
  LLVMValueRef v[64];
  for (int jj = 0; jj < cg->W; jj++)
    v[jj] = jj < valid ? cg_gemm_load_lanes(cg, gepc(cg, s, jj * g->b_cs), klen) : LLVMConstNull(cg->vf);
  cg_gemm_transpose(cg, v);
  for (int kk = 0; kk < klen; kk++) cg_store(cg, v[kk], gepc(cg, t, (int64_t)kk * p->nr));
}

// Panel rows k0 .. k0+klen: a loop over the panel's full W-column blocks, then the partial
// block and the zero blocks past `cols`.
static void pack_transposed_rows(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef src,
                                 LLVMValueRef dst, int cols, LLVMValueRef k0, int klen) {
  int full = cols / cg->W;
  if (full > 1) {
    CgLoop jb;
    cg_for_begin(cg, &jb, cg_i64(cg, 0), cg_i64(cg, (int64_t)full * cg->W), cg_i64(cg, cg->W),
                 "jb");
    pack_transposed_block(cg, g, p, src, dst, jb.iv, cg->W, k0, klen);
    cg_for_end(cg, &jb);
  } else if (full == 1) {
    pack_transposed_block(cg, g, p, src, dst, cg_i64(cg, 0), cg->W, k0, klen);
  }
  for (int jb = full; jb < p->nv; jb++) {
    int valid = cols - jb * cg->W;
    valid = valid < 0 ? 0 : valid;
    if (valid) {
      pack_transposed_block(cg, g, p, src, dst, cg_i64(cg, (int64_t)jb * cg->W), valid, k0, klen);
    } else {
      LLVMValueRef t = gep(cg, dst, add(cg, mul_c(cg, k0, p->nr), cg_i64(cg, (int64_t)jb * cg->W)));
      for (int kk = 0; kk < klen; kk++)
        cg_store(cg, LLVMConstNull(cg->vf), gepc(cg, t, (int64_t)kk * p->nr));
    }
  }
}

static void emit_pack_transposed(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef src,
                                 LLVMValueRef dst, int cols) {
  // b_rs == 1 (B = W^T of a row-major W): W×W blocks read along k, transposed in registers.
  int64_t full = g->K / cg->W;
  if (full) {
    CgLoop kb;
    cg_for_begin(cg, &kb, cg_i64(cg, 0), cg_i64(cg, full * cg->W), cg_i64(cg, cg->W), "kb");
    pack_transposed_rows(cg, g, p, src, dst, cols, kb.iv, cg->W);
    cg_for_end(cg, &kb);
  }
  if (g->K % cg->W)
    pack_transposed_rows(cg, g, p, src, dst, cols, cg_i64(cg, full * cg->W), (int)(g->K % cg->W));
}

static void emit_pack_strided(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef src,
                              LLVMValueRef dst, int cols) {
  // Any other strides: element by element, one panel row at a time.
  CgLoop k;
  cg_for_begin(cg, &k, cg_i64(cg, 0), cg_i64(cg, g->K), cg_i64(cg, 1), "k");
  LLVMValueRef s = gep(cg, src, mul_c(cg, k.iv, g->b_rs)), t = gep(cg, dst, mul_c(cg, k.iv, p->nr));
  for (int jj = 0; jj < p->nr; jj++) {
    LLVMValueRef x =
        jj < cols ? cg_load(cg, cg->f32, gepc(cg, s, jj * g->b_cs), 1) : cg_f32(cg, 0.0);
    cg_store(cg, x, gepc(cg, t, jj));
  }
  cg_for_end(cg, &k);
}

static void emit_pack_bf16(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef src,
                           LLVMValueRef dst, int cols) {
  cg_gemm_bf16_pack_panel(cg, g, p->k_elems, p->nr, src, dst, cols);
}

static void emit_pack_int8(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef src,
                           LLVMValueRef dst, int cols) {
  cg_gemm_int8_pack_panel(cg, g, p->k_elems, p->nr, src, dst, cols);
}

// void pack_panel(ptr b, ptr packed, i64 pi, i64 pn): panel pn of distinct B operand pi.
static LLVMValueRef emit_pack_panel(Cg *cg, LLVMValueRef kernel, const CgGemm *g, const GemmPlan *p,
                                    const char *name) {
  LLVMTypeRef params[4] = {cg->ptr, cg->ptr, cg->i64, cg->i64};
  LLVMValueRef fn = helper_begin(cg, kernel, name, LLVMFunctionType(cg->void_t, params, 4, 0));
  unsigned noinline = LLVMGetEnumAttributeKindForName("noinline", 8);  // one copy, however called
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, noinline, 0));
  LLVMValueRef b = LLVMGetParam(fn, 0), packed = LLVMGetParam(fn, 1), pi = LLVMGetParam(fn, 2),
               pn = LLVMGetParam(fn, 3);
  LLVMValueRef src =
      gep(cg, b, add(cg, packed_b_offset(cg, g, pi), mul_c(cg, pn, p->nr * g->b_cs)));
  LLVMValueRef dst = gep(cg, packed, mul_c(cg, add(cg, mul_c(cg, pi, p->npan), pn), p->panel_k * p->nr));
  void (*emit)(Cg *, const CgGemm *, const GemmPlan *, LLVMValueRef, LLVMValueRef, int) =
      g->bf16        ? emit_pack_bf16
      : g->int8      ? emit_pack_int8
      : g->b_cs == 1 ? emit_pack_rows
      : g->b_rs == 1 ? emit_pack_transposed
                     : emit_pack_strided;
  if (p->ntail) {
    LLVMBasicBlockRef full = cg_block(cg, "full"), tail = cg_block(cg, "tail"),
                      next = cg_block(cg, "next");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, pn, cg_i64(cg, p->npan - 1), ""), tail,
                    full);
    LLVMPositionBuilderAtEnd(cg->b, tail);
    emit(cg, g, p, src, dst, p->ntail);
    LLVMBuildBr(cg->b, next);
    LLVMPositionBuilderAtEnd(cg->b, full);
    emit(cg, g, p, src, dst, p->nr);
    LLVMBuildBr(cg->b, next);
    LLVMPositionBuilderAtEnd(cg->b, next);
  } else {
    emit(cg, g, p, src, dst, p->nr);
  }
  LLVMBuildRetVoid(cg->b);
  return fn;
}

static LLVMValueRef call_pack_panel(Cg *cg, LLVMValueRef fn, LLVMValueRef b, LLVMValueRef packed,
                                    LLVMValueRef pi, LLVMValueRef pn) {
  LLVMTypeRef params[4] = {cg->ptr, cg->ptr, cg->i64, cg->i64};
  LLVMValueRef args[4] = {b, packed, pi, pn};
  return LLVMBuildCall2(cg->b, LLVMFunctionType(cg->void_t, params, 4, 0), fn, args, 4, "");
}

// The pack step's name: a hash of what the packing reads (B's shape, strides and dtype, the
// panel layout), not of the GEMM, so GEMMs that differ only in A, M or the epilogue (a
// pruned layer's, an attention output's and the pooler's) share one pack kernel.
static void pack_name(Cg *cg, const CgGemm *g, const GemmPlan *p, char *buf, size_t size) {
  int64_t v[16 + 2 * IR_MAX_RANK] = {cg->W, g->N, g->K, g->b_rs, g->b_cs, g->bf16, g->int8, g->nbatch,
                                     p->nr, p->nv, p->npan, p->ntail, p->panel_k, p->pbatch, p->k_elems};
  int n = 15;
  for (int d = 0; d < g->nbatch; d++) v[n++] = g->bdim[d], v[n++] = g->b_bstride[d];
  cg_kernel_name_of(cg, "gemm_pack", v, n, buf, size);
}

// The pack step. Work item w = (distinct B pi, panel pn). bufs: B, packed.
static void emit_pack_kernel(Cg *cg, const CgGemm *g, const GemmPlan *p, const char *fn,
                             const char *name) {
  cg_kernel_begin(cg, fn);
  LLVMValueRef kernel = cg->fn;
  LLVMBasicBlockRef entry = LLVMGetInsertBlock(cg->b);
  char helper[128];
  snprintf(helper, sizeof helper, "%s.pack_panel", name);
  LLVMValueRef pack = emit_pack_panel(cg, kernel, g, p, helper);
  cg->fn = kernel;
  LLVMPositionBuilderAtEnd(cg->b, entry);
  LLVMValueRef b = cg_buf(cg, 0), packed = cg_buf(cg, 1);
  CgLoop w;
  cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "w");
  LLVMValueRef pi = LLVMBuildUDiv(cg->b, w.iv, cg_i64(cg, p->npan), "pi");
  LLVMValueRef pn = LLVMBuildURem(cg->b, w.iv, cg_i64(cg, p->npan), "pn");
  call_pack_panel(cg, pack, b, packed, pi, pn);
  cg_for_end(cg, &w);
  cg_kernel_end(cg);
}

// ---------------------------------------------------------------------------------------
// The compute kernel. Work item w = (batch bi, panel group pg, M-block group mg):
//   for each K block kb:  for each M block mb of mg:  for each panel pn of pg:
//     microkernel(mb, pn, kb)
// With p->fused_pack the item first packs its own panels of B (no other item reads them).
// bufs: A, packed B, C[, bias][, residual][, B when the packing is fused].

typedef struct TileCall {
  LLVMValueRef mk[8];                // microkernels by (M tail, N tail, K tail) = bits 2, 1, 0
  LLVMValueRef a, bp, c, bias, res;  // bases of the work item's batch
  LLVMValueRef kb, flags;
  LLVMValueRef mb0, next_pn;         // the item's first M block; the next item's first panel
                                     // minus this item's (0: the same panels)
} TileCall;

// 1 if index x (i64) is the last of n, else 0.
static LLVMValueRef is_last(Cg *cg, LLVMValueRef x, int64_t n) {
  return LLVMBuildZExt(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, x, cg_i64(cg, n - 1), ""), cg->i64,
                       "");
}

// What call (kb, mb, pn) prefetches: its share (the (mb - mb0)-th run of pf_lines lines) of
// the B slice panel pn needs next — K block kb + 1 of the same panel, or after the last K
// block, block 0 of the panel the item that follows (the same thread's next) uses.
static LLVMValueRef prefetch_target(Cg *cg, const CgGemm *g, const GemmPlan *p,
                                    const TileCall *tc, LLVMValueRef mb, LLVMValueRef pn) {
  if (!p->pf_per_iter) return LLVMConstNull(cg->ptr);
  LLVMValueRef panel = mul_c(cg, pn, p->panel_k * p->nr);  // floats from bp
  LLVMValueRef next_k = add(cg, panel, mul_c(cg, add(cg, tc->kb, cg_i64(cg, 1)), p->kc * p->nr));
  LLVMValueRef np = add(cg, pn, tc->next_pn);
  np = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, np, cg_i64(cg, p->npan), ""), np,
                       pn, "");
  LLVMValueRef next_item = mul_c(cg, np, p->panel_k * p->nr);
  LLVMValueRef off = p->nkb == 1 ? next_item
                                 : LLVMBuildSelect(cg->b,
                                                   LLVMBuildICmp(cg->b, LLVMIntEQ, tc->kb,
                                                                 cg_i64(cg, p->nkb - 1), ""),
                                                   next_item, next_k, "");
  off = add(cg, off, mul_c(cg, LLVMBuildSub(cg->b, mb, tc->mb0, ""), p->pf_lines * 16));
  return LLVMBuildGEP2(cg->b, cg->f32, tc->bp, &off, 1, "pf");
}

static void emit_tile_call(Cg *cg, const CgGemm *g, const GemmPlan *p, const TileCall *tc,
                           LLVMValueRef mb, LLVMValueRef pn) {
  LLVMValueRef row = mul_c(cg, mb, p->mr), col = mul_c(cg, pn, p->nr),
               k0 = mul_c(cg, tc->kb, p->kc);
  LLVMValueRef args[7] = {
      gep(cg, tc->a, add(cg, mul_c(cg, row, g->a_rs), mul_c(cg, k0, g->a_cs))),
      gep(cg, tc->bp, add(cg, mul_c(cg, pn, p->panel_k * p->nr), mul_c(cg, k0, p->nr))),
      gep(cg, tc->c, add(cg, mul_c(cg, row, g->c_rs), col)),
      g->has_bias ? gep(cg, tc->bias, col) : LLVMConstNull(cg->ptr),
      g->has_residual ? gep(cg, tc->res, add(cg, mul_c(cg, row, g->c_rs), col))
                      : LLVMConstNull(cg->ptr),
      tc->flags,
      prefetch_target(cg, g, p, tc, mb, pn),
  };
  LLVMTypeRef params[7] = {cg->ptr, cg->ptr, cg->ptr, cg->ptr, cg->ptr, cg->i32, cg->ptr};
  LLVMTypeRef fty = LLVMFunctionType(cg->void_t, params, 7, 0);
  // Which microkernel: bit 2 = last M block (tail), bit 1 = last panel, bit 0 = last K block.
  LLVMValueRef sel = cg_i64(cg, 0);
  if (p->mtail) sel = add(cg, sel, mul_c(cg, is_last(cg, mb, p->nmb), 4));
  if (p->ntail) sel = add(cg, sel, mul_c(cg, is_last(cg, pn, p->npan), 2));
  if (p->ktail) sel = add(cg, sel, is_last(cg, tc->kb, p->nkb));
  int n = 0;
  for (int v = 1; v < 8; v++) n += tc->mk[v] != NULL;
  if (!n) {
    LLVMBuildCall2(cg->b, fty, tc->mk[0], args, 7, "");
    return;
  }
  LLVMBasicBlockRef next = cg_block(cg, "tile.next"), dflt = cg_block(cg, "tile");
  LLVMValueRef sw = LLVMBuildSwitch(cg->b, sel, dflt, (unsigned)n);
  LLVMPositionBuilderAtEnd(cg->b, dflt);
  LLVMBuildCall2(cg->b, fty, tc->mk[0], args, 7, "");
  LLVMBuildBr(cg->b, next);
  for (int v = 1; v < 8; v++) {
    if (!tc->mk[v]) continue;
    LLVMBasicBlockRef bb = cg_block(cg, "tile.edge");
    LLVMAddCase(sw, cg_i64(cg, v), bb);
    LLVMPositionBuilderAtEnd(cg->b, bb);
    LLVMBuildCall2(cg->b, fty, tc->mk[v], args, 7, "");
    LLVMBuildBr(cg->b, next);
  }
  LLVMPositionBuilderAtEnd(cg->b, next);
}

static LLVMValueRef min_c(Cg *cg, LLVMValueRef x, int64_t c) {
  LLVMValueRef cc = cg_i64(cg, c);
  return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, x, cc, ""), x, cc, "");
}

// words_out: after its last K block, tile (mb, pn) of C (finished, in L1) as words of two
// bf16 into the copy: row i's N / 2 words at words + i·N / 2 (N even, 2-D, nr even).
static void tile_words(Cg *cg, const CgGemm *g, LLVMValueRef c, LLVMValueRef words, LLVMValueRef row0,
                       LLVMValueRef rows, LLVMValueRef col0, int cols) {
  CgLoop r;
  cg_for_begin(cg, &r, cg_i64(cg, 0), rows, cg_i64(cg, 1), "words.row");
  LLVMValueRef i = add(cg, row0, r.iv);
  LLVMValueRef src = gep(cg, c, add(cg, mul_c(cg, i, g->c_rs), col0));
  LLVMValueRef dst = cg_gep(cg, cg->i32, words,
                            add(cg, mul_c(cg, i, g->N / 2), LLVMBuildUDiv(cg->b, col0, cg_i64(cg, 2), "")));
  cg_gemm_bf16_row_words(cg, src, dst, cols);
  cg_for_end(cg, &r);
}

static void emit_tile_words(Cg *cg, const CgGemm *g, const GemmPlan *p, LLVMValueRef c, LLVMValueRef words,
                            LLVMValueRef kb, LLVMValueRef mb, LLVMValueRef pn) {
  assert(g->N % 2 == 0 && p->nr % 2 == 0 && g->nbatch == 0);
  LLVMBasicBlockRef done = cg_block(cg, "words.done");
  if (p->nkb > 1) {
    LLVMBasicBlockRef go = cg_block(cg, "words");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, kb, cg_i64(cg, p->nkb - 1), ""), go, done);
    LLVMPositionBuilderAtEnd(cg->b, go);
  }
  LLVMValueRef row0 = mul_c(cg, mb, p->mr), col0 = mul_c(cg, pn, p->nr);
  LLVMValueRef rows = cg_i64(cg, p->mr);
  if (p->mtail)
    rows = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, mb, cg_i64(cg, p->nmb - 1), ""),
                           cg_i64(cg, p->mtail), rows, "rows");
  if (p->ntail) {
    LLVMBasicBlockRef tail = cg_block(cg, "words.tail"), full = cg_block(cg, "words.full");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, pn, cg_i64(cg, p->npan - 1), ""), tail, full);
    LLVMPositionBuilderAtEnd(cg->b, tail);
    tile_words(cg, g, c, words, row0, rows, col0, p->ntail);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, full);
  }
  tile_words(cg, g, c, words, row0, rows, col0, (int)p->nr);
  LLVMBuildBr(cg->b, done);
  LLVMPositionBuilderAtEnd(cg->b, done);
}

static void emit_compute_kernel(Cg *cg, const CgGemm *g, const GemmPlan *p, const char *fn,
                                const char *name) {
  cg_kernel_begin(cg, fn);
  LLVMValueRef kernel = cg->fn;
  LLVMBasicBlockRef entry = LLVMGetInsertBlock(cg->b);
  TileCall tc = {0};
  for (int v = 0; v < 8; v++) {
    bool mt = v & 4, nt = v & 2, kt = v & 1;
    if ((mt && !p->mtail) || (nt && !p->ntail) || (kt && !p->ktail)) continue;
    char mk[128];
    snprintf(mk, sizeof mk, "%s.mk%s%s%s", name, mt ? ".m" : "", nt ? ".n" : "", kt ? ".k" : "");
    tc.mk[v] = emit_microkernel(cg, kernel, g, p, mk, mt ? p->mtail : p->mr, nt ? p->ntail : p->nr,
                                kt ? p->ktail : p->kc);
  }
  LLVMValueRef pack = NULL;
  if (p->fused_pack) {
    char helper[128];
    snprintf(helper, sizeof helper, "%s.pack_panel", name);
    pack = emit_pack_panel(cg, kernel, g, p, helper);
  }
  cg->fn = kernel;
  LLVMPositionBuilderAtEnd(cg->b, entry);

  int nb = 0;
  LLVMValueRef a = cg_buf(cg, nb++), bp = cg_buf(cg, nb++), c = cg_buf(cg, nb++);
  LLVMValueRef bias = g->has_bias ? cg_buf(cg, nb++) : NULL,
               res = g->has_residual ? cg_buf(cg, nb++) : NULL;
  LLVMValueRef b = p->fused_pack ? cg_buf(cg, nb++) : NULL;
  LLVMValueRef words = g->words_out ? cg_buf(cg, nb++) : NULL;
  CgLoop w;
  cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "w");
  int64_t per_batch = p->npg * p->nmg;
  LLVMValueRef bi = LLVMBuildUDiv(cg->b, w.iv, cg_i64(cg, per_batch), "bi");
  LLVMValueRef rem = LLVMBuildURem(cg->b, w.iv, cg_i64(cg, per_batch), "");
  LLVMValueRef pg = LLVMBuildUDiv(cg->b, rem, cg_i64(cg, p->nmg), "pg");
  LLVMValueRef mg = LLVMBuildURem(cg->b, rem, cg_i64(cg, p->nmg), "mg");
  LLVMValueRef coff = batch_offset(cg, g, bi, g->c_bstride);
  LLVMValueRef pbi = packed_index(cg, g, bi);
  tc.a = gep(cg, a, batch_offset(cg, g, bi, g->a_bstride));
  tc.bp = gep(cg, bp, mul_c(cg, pbi, p->npan * p->panel_k * p->nr));
  tc.c = gep(cg, c, coff);
  tc.bias = bias;
  tc.res = res ? gep(cg, res, coff) : NULL;
  LLVMValueRef mb0 = mul_c(cg, mg, p->mgroup),
               mb1 = min_c(cg, add(cg, mb0, cg_i64(cg, p->mgroup)), p->nmb);
  LLVMValueRef pn0 = mul_c(cg, pg, p->pgroup),
               pn1 = min_c(cg, add(cg, pn0, cg_i64(cg, p->pgroup)), p->npan);
  tc.mb0 = mb0;
  tc.next_pn = LLVMBuildSelect(
      cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, mg, cg_i64(cg, p->nmg - 1), ""),
      cg_i64(cg, p->pgroup), cg_i64(cg, 0), "next_pn");

  if (p->fused_pack) {
    CgLoop pack_pn;
    cg_for_begin(cg, &pack_pn, pn0, pn1, cg_i64(cg, 1), "pack");
    call_pack_panel(cg, pack, b, bp, pbi, pack_pn.iv);
    cg_for_end(cg, &pack_pn);
  }

  CgLoop kb;
  cg_for_begin(cg, &kb, cg_i64(cg, 0), cg_i64(cg, p->nkb), cg_i64(cg, 1), "kb");
  tc.kb = kb.iv;
  LLVMValueRef accumulate =
      LLVMBuildZExt(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, kb.iv, cg_i64(cg, 0), ""), cg->i32, "");
  LLVMValueRef last = LLVMBuildZExt(
      cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, kb.iv, cg_i64(cg, p->nkb - 1), ""), cg->i32, "");
  tc.flags = LLVMBuildOr(cg->b, accumulate, LLVMBuildShl(cg->b, last, cg_i32(cg, 1), ""), "flags");
  CgLoop mb, pn;  // the A sliver (mr × kc) stays in L1 across the panels
  cg_for_begin(cg, &mb, mb0, mb1, cg_i64(cg, 1), "mb");
  cg_for_begin(cg, &pn, pn0, pn1, cg_i64(cg, 1), "pn");
  emit_tile_call(cg, g, p, &tc, mb.iv, pn.iv);
  if (words) emit_tile_words(cg, g, p, c, words, kb.iv, mb.iv, pn.iv);
  cg_for_end(cg, &pn);
  cg_for_end(cg, &mb);
  cg_for_end(cg, &kb);
  cg_for_end(cg, &w);
  cg_kernel_end(cg);
}

// ---------------------------------------------------------------------------------------

bool cg_lower_gemm(Cg *cg, const CgGemm *g, const char *name, CgArg a, CgArg b, CgArg c, CgArg bias,
                   CgArg residual, int node, CgSteps *steps, Diag *d) {
  assert(g->M >= 0 && g->N >= 0 && g->K >= 0 && g->nbatch >= 0 && g->nbatch <= IR_MAX_RANK);
  int64_t batch = 1;
  for (int i = 0; i < g->nbatch; i++) batch *= g->bdim[i];
  if (g->M == 0 || g->N == 0 || batch == 0) return true;  // C is empty: no steps
  CgGemm w;  // bf16, int8: the GEMM over words of two bf16 or four int8, A from its packed copy
  int64_t k_elems = g->K;
  if (g->bf16) {
    cg_gemm_bf16_pack_a(cg, g, name, &a, node, steps, &w);
    g = &w;
  } else if (g->int8) {
    cg_gemm_int8_pack_a(cg, g, name, &a, node, steps, &w);
    g = &w;
  }
  GemmPlan p;
  gemm_plan(g, cg->W, &cg->tuning, &p);
  p.k_elems = k_elems;
  char fn[96];
  size_t packed_bytes = (size_t)(p.pbatch * p.npan * p.panel_k * p.nr) * sizeof(float);
  int scratch = cg_steps_new_scratch(steps);
  CgArg packed = cg_arg_scratch(scratch, packed_bytes ? packed_bytes : sizeof(float));

  bool quick = cg->quick;
  cg->quick = true;  // the pack and compute kernels lose nothing at O1 (codegen/cg.h)
  if ((g->K > 0 || g->int8) && !p.fused_pack) {  // (int8 panels hold scales even at K = 0)
    char pack[64];
    pack_name(cg, g, &p, pack, sizeof pack);
    snprintf(fn, sizeof fn, "%s.pack", pack);
    if (!LLVMGetNamedFunction(cg->mod, fn)) emit_pack_kernel(cg, g, &p, fn, pack);  // shared by equal packings
    CgStep *s = cg_steps_add(steps, fn, p.pbatch * p.npan, node);
    s->args[s->n_args++] = b;
    s->args[s->n_args++] = packed;
    s->once = g->b_constant && !cg->pack_each_run;
  }

  snprintf(fn, sizeof fn, "%s.gemm", name);
  if (!LLVMGetNamedFunction(cg->mod, fn)) emit_compute_kernel(cg, g, &p, fn, name);
  cg->quick = quick;
  CgStep *s = cg_steps_add(steps, fn, p.batch * p.npg * p.nmg, node);
  s->args[s->n_args++] = a;
  s->args[s->n_args++] = packed;
  s->args[s->n_args++] = c;
  if (g->has_bias) s->args[s->n_args++] = bias;
  if (g->has_residual) s->args[s->n_args++] = residual;
  if (p.fused_pack) s->args[s->n_args++] = b;
  if (g->words_out) {  // the bf16 copy of C a later GEMM reads as its A (cg_steps_words_of)
    assert(c.kind == CG_ARG_NODE);
    cg_steps_add_words(steps, s, c.id, g->M, g->N);
  }
  (void)d;
  return true;
}
