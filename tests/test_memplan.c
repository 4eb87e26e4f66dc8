// Tests of memory planning: the planner (passes/memplan.c) on hand-made and random interval
// sets — no two buffers with overlapping lifetimes overlap in memory (checked pair by
// pair), offsets aligned, the arena at least the lower bound, in-place takeovers only where
// allowed — and whole programs (codegen/memory.c): tiny VisualBERT inference and training
// steps give the same bits with the arena as with one allocation per buffer (the tests run
// with KILN_POISON_BUFFERS=1, so a buffer read before it is written shows up as NaN).
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/compile.h"
#include "frontend/frontend.h"
#include "passes/memplan.h"
#include "passes/passes.h"
#include "tests/test_tuning.h"
#include "tests/check_run.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return rng_state >> 33;
}

// The planner's promises, checked exhaustively over all pairs.
static void check_plan(const MemInterval *v, int n, const size_t *off, const MemStats *st) {
  size_t top = 0;
  for (int i = 0; i < n; i++) {
    ck_assert_msg(off[i] % MEM_ALIGN == 0, "interval %d at offset %zu", i, off[i]);
    if (v[i].bytes && off[i] + v[i].bytes > top) top = off[i] + v[i].bytes;
  }
  ck_assert_uint_le(top, st->arena_bytes);
  ck_assert_uint_ge(st->arena_bytes, st->lower_bound_bytes);
  ck_assert_uint_le(st->arena_bytes, st->unplanned_bytes);
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      if (!v[i].bytes || !v[j].bytes) continue;
      bool live_together = v[i].pinned || v[j].pinned || (v[i].first <= v[j].last && v[j].first <= v[i].last);
      bool share_ok = (v[i].may_share_with == j && v[j].last == v[i].first && v[j].first < v[i].first) ||
                      (v[j].may_share_with == i && v[i].last == v[j].first && v[i].first < v[j].first);
      bool overlap_mem = off[i] < off[j] + v[j].bytes && off[j] < off[i] + v[i].bytes;
      if (live_together && overlap_mem)
        ck_assert_msg(share_ok && off[i] == off[j],
                      "intervals %d [%d,%d] and %d [%d,%d] overlap in time and memory", i,
                      v[i].first, v[i].last, j, v[j].first, v[j].last);
    }
}

START_TEST(test_planner_reuses_dead_buffers) {
  // a [0,1], b [1,2], c [2,3] of 100 bytes each: c can reuse a's memory, b cannot.
  MemInterval v[] = {{100, 0, 1, false, -1}, {100, 1, 2, false, -1}, {100, 2, 3, false, -1}};
  size_t off[3];
  MemStats st;
  pass_memplan_place(v, 3, off, &st);
  check_plan(v, 3, off, &st);
  ck_assert_uint_eq(st.arena_bytes, 256);  // two blocks of 128
  ck_assert_uint_eq(st.lower_bound_bytes, 256);
  ck_assert_uint_eq(st.unplanned_bytes, 384);
  ck_assert_uint_eq(off[0], off[2]);
}
END_TEST

START_TEST(test_planner_pinned_buffers_share_nothing) {
  MemInterval v[] = {{64, 0, 0, true, -1}, {64, 1, 1, false, -1}, {64, 2, 2, false, -1}};
  size_t off[3];
  MemStats st;
  pass_memplan_place(v, 3, off, &st);
  check_plan(v, 3, off, &st);
  ck_assert_uint_ne(off[0], off[1]);
  ck_assert_uint_ne(off[0], off[2]);
  ck_assert_uint_eq(st.arena_bytes, 128);
  ck_assert_uint_eq(st.pinned_bytes, 64);
}
END_TEST

START_TEST(test_planner_in_place_only_when_the_input_dies_there) {
  // b takes over a (a dies at step 1 where b starts); c asks for b but b lives on to 3.
  MemInterval v[] = {{256, 0, 1, false, -1}, {256, 1, 3, false, 0}, {256, 2, 4, false, 1},
                     {512, 4, 5, false, 2} /* too big for c's block */};
  size_t off[4];
  MemStats st;
  pass_memplan_place(v, 4, off, &st);
  check_plan(v, 4, off, &st);
  ck_assert_uint_eq(off[0], off[1]);
  ck_assert_uint_ne(off[1], off[2]);
  ck_assert_int_eq(st.n_in_place, 1);
  // Two outputs may not take over the same dying input.
  MemInterval w[] = {{128, 0, 1, false, -1}, {128, 1, 2, false, 0}, {128, 1, 2, false, 0}};
  pass_memplan_place(w, 3, off, &st);
  check_plan(w, 3, off, &st);
  ck_assert_int_eq(st.n_in_place, 1);
  // Pinned values are never taken over.
  MemInterval p[] = {{128, 0, 1, true, -1}, {128, 1, 2, false, 0}};
  pass_memplan_place(p, 2, off, &st);
  check_plan(p, 2, off, &st);
  ck_assert_int_eq(st.n_in_place, 0);
}
END_TEST

START_TEST(test_planner_random_sets) {
  for (int trial = 0; trial < 200; trial++) {
    int n = 1 + (int)(next_rand() % 60), steps = 1 + (int)(next_rand() % 40);
    MemInterval *v = calloc((size_t)n, sizeof *v);
    size_t *off = calloc((size_t)n, sizeof *off);
    for (int i = 0; i < n; i++) {
      int a = (int)(next_rand() % (uint64_t)steps), b = (int)(next_rand() % (uint64_t)steps);
      v[i] = (MemInterval){next_rand() % 5 == 0 ? 0 : 1 + next_rand() % 5000, a < b ? a : b, a < b ? b : a,
                           next_rand() % 10 == 0, -1};
      if (i && next_rand() % 3 == 0) {  // ask to take over an earlier one (allowed or not)
        int j = (int)(next_rand() % (uint64_t)i);
        v[i].may_share_with = j;
        if (next_rand() % 2) v[i].first = v[j].last, v[i].last = v[i].first + (int)(next_rand() % 5);
      }
    }
    MemStats st;
    pass_memplan_place(v, n, off, &st);
    check_plan(v, n, off, &st);
    // Without in-place requests the lower bound is the most bytes live at one step.
    for (int i = 0; i < n; i++) v[i].may_share_with = -1;
    MemStats plain;
    pass_memplan_place(v, n, off, &plain);
    check_plan(v, n, off, &plain);
    size_t peak = 0, pinned = 0;
    for (int i = 0; i < n; i++)
      if (v[i].pinned) pinned += (v[i].bytes + MEM_ALIGN - 1) / MEM_ALIGN * MEM_ALIGN;
    for (int s = 0; s <= steps + 5; s++) {
      size_t live = pinned;
      for (int i = 0; i < n; i++)
        if (!v[i].pinned && v[i].first <= s && s <= v[i].last)
          live += (v[i].bytes + MEM_ALIGN - 1) / MEM_ALIGN * MEM_ALIGN;
      if (live > peak) peak = live;
    }
    ck_assert_uint_eq(plain.lower_bound_bytes, peak);
    free(v);
    free(off);
  }
}
END_TEST

// ---------------------------------------------------------------------------------------
// Whole programs: the arena against one buffer each, bit for bit.

static const char *const tiny[][2] = {
  {"layers", "2"}, {"hidden", "32"}, {"heads", "4"}, {"intermediate", "64"}, {"vocab", "50"},
  {"visual_dim", "24"}, {"text_len", "6"}, {"regions", "5"}, {"batch", "2"}, {"max_positions", "16"},
  {"num_labels", "7"},
};

static void load_tiny(const char *model, const char *loss, IrGraph *g) {
  FeSet sets[16];
  static char args[16][64];  // fe_parse_set keeps pointers into its argument
  int n = 0;
  for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++) {
    snprintf(args[n], sizeof args[n], "%s=%s", tiny[i][0], tiny[i][1]);
    ck_assert(fe_parse_set(args[n], &sets[n]));
    n++;
  }
  Diag d = {0};
  ck_assert_msg(fe_load_model(model, sets, n, g, &d), "%s", d.msg);
  PassOptions po = {.loss = loss};
  ck_assert_msg(pass_run_pipeline(g, &po, NULL, NULL, 0, &d), "%s", d.msg);
}

// Compiles `want`, binds parameters and inputs to the same pseudo-random values every
// time (integer inputs 0: valid ids and labels), runs twice (the second run sees the arena
// the first left behind) and returns copies of the wanted values.
static void **run_program(const IrGraph *g, const bool *want, bool training, bool no_memplan,
                          size_t *arena) {
  CgOptions opt = {.training = training, .no_memplan = no_memplan, .tuning = test_tuning()};
  CgProgram p;
  Diag d = {0};
  ck_assert_msg(cg_compile(g, want, &opt, &p, &d), "%s", d.msg);
  *arena = p.arena_bytes;
  uint64_t state = 12345;
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if ((n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) || !p.value[i]) continue;
    for (int64_t j = 0; j < ir_numel(&n->shape); j++) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      double x = n->dtype != DT_F32 ? 0.0 : strstr(n->name, "mask") ? 1.0 : (double)(state >> 40) / (double)(1 << 24) - 0.5;
      dt_store(n->dtype, p.value[i], (size_t)j, x);
    }
  }
  *p.seed = 7;
  rt_plan_prepare(&p.plan, 2);
  rt_plan_run(&p.plan, 2);
  rt_plan_run(&p.plan, 2);
  ck_assert_msg(cg_program_status(&p, &d), "%s", d.msg);
  void **out = calloc((size_t)g->n_nodes + 1, sizeof *out);
  for (int i = 0; i < g->n_nodes; i++)
    if (want[i]) {
      out[i] = malloc(p.bytes[i] + 1);
      memcpy(out[i], p.value[i], p.bytes[i]);
    }
  cg_program_free(&p);
  return out;
}

static void expect_arena_matches_separate(const IrGraph *g, const bool *want, bool training) {
  size_t planned_arena, separate_arena;
  void **a = run_program(g, want, training, false, &planned_arena);
  void **b = run_program(g, want, training, true, &separate_arena);
  ck_assert_uint_gt(planned_arena, 0);
  ck_assert_uint_eq(separate_arena, 0);
  int compared = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    if (!want[i]) continue;
    size_t bytes = (size_t)ir_numel(&g->nodes[i]->shape) * dt_size(g->nodes[i]->dtype);
    ck_assert_msg(memcmp(a[i], b[i], bytes) == 0, "\"%s\" differs with the arena", g->nodes[i]->name);
    if (g->nodes[i]->dtype == DT_F32)
      for (size_t k = 0; k < bytes / 4; k++) {
        float f;
        memcpy(&f, (char *)a[i] + 4 * k, 4);
        ck_assert_msg(f == f, "\"%s\"[%zu] is NaN (read before written?)", g->nodes[i]->name, k);
      }
    compared++;
    free(a[i]);
    free(b[i]);
  }
  ck_assert_int_gt(compared, 0);
  free(a);
  free(b);
}

START_TEST(test_visualbert_tiny_inference_arena_is_bitwise_separate) {
  IrGraph g;
  load_tiny("models/visualbert-vqa.json", NULL, &g);
  bool *want = calloc((size_t)g.n_nodes, sizeof *want);
  for (int i = 0; i < g.n_outputs; i++) want[g.outputs[i]->id] = true;
  expect_arena_matches_separate(&g, want, false);
  free(want);
  ir_graph_free(&g);
}
END_TEST

START_TEST(test_visualbert_tiny_training_arena_is_bitwise_separate) {
  IrGraph g;
  load_tiny("models/visualbert-pretrain.json", "loss", &g);
  bool *want = calloc((size_t)g.n_nodes, sizeof *want);
  for (int i = 0; i < g.n_losses; i++) want[g.losses[i].node->id] = true;
  for (int i = 0; i < g.n_grads; i++) want[g.grads[i].grad->id] = true;
  expect_arena_matches_separate(&g, want, true);
  // The plan must pay off: well under the sum of all buffers (two thirds: since weight
  // gradients are one GEMM, no [batch, out, in] products are left to overlap), near the
  // lower bound.
  CgOptions opt = {.training = true, .tuning = test_tuning()};
  MemStats st;
  int n_steps;
  Diag d = {0};
  ck_assert_msg(cg_memory_stats(&g, want, &opt, &st, NULL, &n_steps, &d), "%s", d.msg);
  ck_assert_uint_lt(st.arena_bytes, st.unplanned_bytes / 3 * 2);
  ck_assert_uint_le(st.arena_bytes, st.lower_bound_bytes + st.lower_bound_bytes / 10);
  ck_assert_int_gt(st.n_in_place, 0);
  free(want);
  ir_graph_free(&g);
}
END_TEST

int main(void) {
  Suite *s = suite_create("memplan");
  TCase *tc = tcase_create("planner");
  tcase_add_test(tc, test_planner_reuses_dead_buffers);
  tcase_add_test(tc, test_planner_pinned_buffers_share_nothing);
  tcase_add_test(tc, test_planner_in_place_only_when_the_input_dies_there);
  tcase_add_test(tc, test_planner_random_sets);
  suite_add_tcase(s, tc);
  TCase *tp = tcase_create("programs");
  tcase_add_test(tp, test_visualbert_tiny_inference_arena_is_bitwise_separate);
  tcase_add_test(tp, test_visualbert_tiny_training_arena_is_bitwise_separate);
  suite_add_tcase(s, tp);
  return check_run(s);
}
