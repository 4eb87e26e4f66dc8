// Tests of frontend/: config arithmetic (expr.c), model files to IR (model.c: config and
// --set, shapes, templates, blocks, includes, errors with their places), parameter
// initialisers (init.c), availability of outputs (bind.c), and the real model files.
// Model files are written into a fresh temporary directory from string literals in which
// ' stands for " so that the JSON reads as JSON.
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/bind.h"
#include "frontend/expr.h"
#include "frontend/frontend.h"
#include "tests/check_run.h"

// ---------------------------------------------------------------------------------------
// Config arithmetic.

typedef struct {
  const char *name;
  double value;
} Entry;

static const Entry entries[] = {{"hidden", 768}, {"heads", 12}, {"text_len", 20},
                                {"regions", 100}, {NULL, 0}};

static bool lookup_entries(void *ctx, const char *name, size_t len, double *out) {
  const Entry *e = ctx;
  for (; e->name; e++)
    if (strlen(e->name) == len && strncmp(e->name, name, len) == 0) {
      *out = e->value;
      return true;
    }
  return false;
}

static double eval_ok(const char *src) {
  Diag d = {0};
  double v = NAN;
  bool ok = expr_eval(src, lookup_entries, (void *)entries, &v, &d);
  ck_assert_msg(ok && !d.set, "\"%s\" failed: %s", src, d.msg);
  return v;
}

static void eval_fails(const char *src, const char *msg) {
  Diag d = {0};
  double v;
  ck_assert_msg(!expr_eval(src, lookup_entries, (void *)entries, &v, &d), "\"%s\" accepted", src);
  ck_assert_str_eq(d.msg, msg);
}

START_TEST(test_expr_arithmetic_and_precedence) {
  ck_assert_double_eq(eval_ok("1 + 2 * 3"), 7);
  ck_assert_double_eq(eval_ok("(1 + 2) * 3"), 9);
  ck_assert_double_eq(eval_ok("8 - 2 - 1"), 5);  // left associative
  ck_assert_double_eq(eval_ok("2 * 3 / 4"), 1.5);
  ck_assert_double_eq(eval_ok("((2))"), 2);
  ck_assert_double_eq(eval_ok("  1.5e1 + .5 "), 15.5);
  ck_assert_double_eq(eval_ok("text_len + regions"), 120);
  ck_assert_double_eq(eval_ok("hidden / heads"), 64);
}
END_TEST

START_TEST(test_expr_unary_minus_and_plus) {
  ck_assert_double_eq(eval_ok("-2 * 3"), -6);
  ck_assert_double_eq(eval_ok("- -2"), 2);
  ck_assert_double_eq(eval_ok("2 - -3"), 5);
  ck_assert_double_eq(eval_ok("-(1 + 2)"), -3);
  ck_assert_double_eq(eval_ok("+4"), 4);
  ck_assert_double_eq(eval_ok("-1"), -1);
}
END_TEST

START_TEST(test_expr_floor_division_and_modulo) {
  ck_assert_double_eq(eval_ok("7 / 2"), 3.5);
  ck_assert_double_eq(eval_ok("7 // 2"), 3);
  ck_assert_double_eq(eval_ok("-7 // 2"), -4);  // floor, not truncation
  ck_assert_double_eq(eval_ok("7 % 3"), 1);
  ck_assert_double_eq(eval_ok("7.5 % 2"), 1.5);
  ck_assert_double_eq(eval_ok("2 + 7 // 2 * 2"), 8);  // // binds like * and /
}
END_TEST

START_TEST(test_expr_modulo_agrees_with_floor_division) {
  // a == (a // b) * b + a % b for every sign, so % takes the sign of the divisor.
  ck_assert_double_eq(eval_ok("-7 % 3"), 2);
  ck_assert_double_eq(eval_ok("7 % -3"), -2);
  ck_assert_double_eq(eval_ok("-7 % -3"), -1);
  const int a[] = {-7, -6, -1, 0, 1, 6, 7}, b[] = {-3, -2, 2, 3};
  for (int i = 0; i < 7; i++)
    for (int k = 0; k < 4; k++) {
      char src[64];
      snprintf(src, sizeof src, "(%d // %d) * %d + %d %% %d", a[i], b[k], b[k], a[i], b[k]);
      ck_assert_msg(eval_ok(src) == a[i], "%s is %g", src, eval_ok(src));
    }
}
END_TEST

START_TEST(test_expr_sqrt) {
  ck_assert_double_eq(eval_ok("sqrt(16) + 1"), 5);
  ck_assert_double_eq(eval_ok("1 / sqrt(hidden / heads)"), 0.125);
  ck_assert_double_eq(eval_ok("sqrt (9)"), 3);
  ck_assert_double_eq(eval_ok("2 * sqrt(4) * 2"), 8);
  eval_fails("sqrt(1 - 2)", "expression \"sqrt(1 - 2)\": sqrt of a negative number");
}
END_TEST

START_TEST(test_expr_rejects_unknown_name) {
  eval_fails("hiden * 2", "expression \"hiden * 2\": unknown name \"hiden\" (not a config entry)");
  eval_fails("sqrt", "expression \"sqrt\": unknown name \"sqrt\" (not a config entry)");
}
END_TEST

START_TEST(test_expr_rejects_division_by_zero) {
  eval_fails("1 / 0", "expression \"1 / 0\": division by zero");
  eval_fails("1 // (2 - 2)", "expression \"1 // (2 - 2)\": division by zero");
  eval_fails("5 % 0", "expression \"5 % 0\": division by zero");
}
END_TEST

START_TEST(test_expr_syntax_errors_give_the_column) {
  eval_fails("1 + * 2", "expression \"1 + * 2\": unexpected character at column 5");
  eval_fails("(1 + 2", "expression \"(1 + 2\": expected ')' at column 7");
  eval_fails("2 3", "expression \"2 3\": unexpected text at column 3");
  eval_fails("1 +", "expression \"1 +\": unexpected end at column 4");
  eval_fails("", "expression \"\": unexpected end at column 1");
  eval_fails("hidden $ 2", "expression \"hidden $ 2\": unexpected text at column 8");
}
END_TEST

START_TEST(test_expr_rejects_deep_nesting) {
  char src[1024];
  memset(src, '(', 300);
  strcpy(src + 300, "1");
  memset(src + 301, ')', 300);
  src[601] = 0;
  Diag d = {0};
  double v;
  ck_assert(!expr_eval(src, NULL, NULL, &v, &d));
  ck_assert_ptr_nonnull(strstr(d.msg, "nested too deeply"));
}
END_TEST

START_TEST(test_expr_whole_accepts_integers_only) {
  long long w;
  ck_assert(expr_whole(3.0, &w) && w == 3);
  ck_assert(expr_whole(-4.0, &w) && w == -4);
  ck_assert(expr_whole(9007199254740992.0, &w) && w == 9007199254740992LL);
  ck_assert(!expr_whole(2.5, &w));
  ck_assert(!expr_whole(1e300, &w));
  ck_assert(!expr_whole(NAN, &w));
}
END_TEST

START_TEST(test_parse_set_splits_name_and_value) {
  FeSet s;
  ck_assert(fe_parse_set("hidden=64", &s));
  ck_assert_str_eq(s.name, "hidden");
  ck_assert_str_eq(s.value, "64");
  ck_assert(fe_parse_set("seq=a + b=c", &s));  // the first '=' splits
  ck_assert_str_eq(s.name, "seq");
  ck_assert_str_eq(s.value, "a + b=c");
  ck_assert(!fe_parse_set("=3", &s));
  ck_assert(!fe_parse_set("hidden=", &s));
  ck_assert(!fe_parse_set("hidden", &s));
  char long_name[200];
  memset(long_name, 'a', 150);
  strcpy(long_name + 150, "=1");
  ck_assert(!fe_parse_set(long_name, &s));
}
END_TEST

// ---------------------------------------------------------------------------------------
// Model files in a temporary directory.

static char dir[64];
static char *made[32];  // files and directories created, removed in reverse order
static int n_made;
static IrGraph g;
static Diag d;

static void setup(void) {
  strcpy(dir, "/tmp/kiln-test-frontend-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  n_made = 0;
  memset(&g, 0, sizeof g);
  memset(&d, 0, sizeof d);
}

static void teardown(void) {
  ir_graph_free(&g);
  for (int i = n_made - 1; i >= 0; i--) {
    remove(made[i]);
    free(made[i]);
  }
  rmdir(dir);
}

// The path of a file in the temporary directory (valid until the next 8 calls).
static const char *path_of(const char *name) {
  static char buf[8][512];
  static int next;
  char *p = buf[next++ % 8];
  snprintf(p, 512, "%s/%s", dir, name);
  return p;
}

// Writes a model file; ' in text becomes ". Creates a sub-directory named in `name`.
static void write_model(const char *name, const char *text) {
  const char *slash = strchr(name, '/');
  if (slash) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s/%.*s", dir, (int)(slash - name), name);
    if (mkdir(sub, 0700) == 0) made[n_made++] = strdup(sub);
  }
  const char *path = path_of(name);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  for (const char *c = text; *c; c++) fputc(*c == '\'' ? '"' : *c, f);
  fclose(f);
  ck_assert_int_lt(n_made, 32);
  made[n_made++] = strdup(path);
}

// Loads the model at `path` with --set overrides given as "NAME=VALUE" strings up to a NULL.
static bool load_path(const char *path, va_list ap) {
  FeSet sets[16];
  int n = 0;
  for (const char *s; (s = va_arg(ap, const char *));) {
    ck_assert_int_lt(n, 16);
    ck_assert_msg(fe_parse_set(s, &sets[n++]), "bad --set %s", s);
  }
  ir_graph_free(&g);
  memset(&d, 0, sizeof d);
  return fe_load_model(path, sets, n, &g, &d);
}

// Loads a file of the temporary directory; it must load.
__attribute__((sentinel)) static void load_ok(const char *name, ...) {
  va_list ap;
  va_start(ap, name);
  bool ok = load_path(path_of(name), ap);
  va_end(ap);
  ck_assert_msg(ok && !d.set, "%s rejected: %s", name, d.msg);
}

// Loads a file of the temporary directory; it must fail with a message containing `part`
// (any message if part is NULL).
__attribute__((sentinel)) static void load_fails(const char *name, const char *part, ...) {
  va_list ap;
  va_start(ap, part);
  bool ok = load_path(path_of(name), ap);
  va_end(ap);
  ck_assert_msg(!ok, "%s accepted; expected an error containing \"%s\"", name, part ? part : "");
  ck_assert_msg(d.set, "%s failed without a message", name);
  if (part) ck_assert_msg(strstr(d.msg, part), "message \"%s\" lacks \"%s\"", d.msg, part);
}

// Loads one of the real model files (relative to the source root); it must load.
__attribute__((sentinel)) static void load_model_ok(const char *path, ...) {
  va_list ap;
  va_start(ap, path);
  bool ok = load_path(path, ap);
  va_end(ap);
  ck_assert_msg(ok && !d.set, "%s rejected: %s", path, d.msg);
}

static IrNode *node(const char *name) {
  IrNode *n = ir_graph_find(&g, name);
  ck_assert_msg(n != NULL, "no tensor \"%s\"", name);
  return n;
}

static double config(const char *name) {
  for (int i = 0; i < g.n_config; i++)
    if (strcmp(g.config[i].name, name) == 0) return g.config[i].value;
  ck_abort_msg("no config entry \"%s\"", name);
  return NAN;
}

static void assert_shape(const char *name, int rank, ...) {
  IrShape want = {.rank = rank};
  va_list ap;
  va_start(ap, rank);
  for (int k = 0; k < rank; k++) want.dim[k] = va_arg(ap, int);
  va_end(ap);
  const IrNode *n = node(name);
  char a[160], b[160];
  ck_assert_msg(ir_shape_eq(&n->shape, &want), "\"%s\" is %s, want %s", name,
                ir_shape_str(&n->shape, a, sizeof a), ir_shape_str(&want, b, sizeof b));
}

static int count_params(void) {
  int k = 0;
  for (int i = 0; i < g.n_nodes; i++) k += g.nodes[i]->op == IR_OP_PARAM;
  return k;
}

// ---------------------------------------------------------------------------------------
// Config and --set.

static const char *const config_model =
    "{'format': 'kiln-model/1',\n"
    " 'config': {'hidden': 32, 'heads': 4, 'head_dim': 'hidden / heads', 'mlp': 'hidden * 4'},\n"
    " 'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2, 'head_dim']}],\n"
    " 'params': [{'name': 'w', 'shape': ['hidden', 'mlp'], 'init': 'zeros'}],\n"
    " 'outputs': ['x']}\n";

START_TEST(test_config_entries_refer_to_other_entries) {
  write_model("m.json", config_model);
  load_ok("m.json", NULL);
  ck_assert_double_eq(config("head_dim"), 8);
  ck_assert_double_eq(config("mlp"), 128);
  ck_assert_int_eq(g.n_config, 4);
  ck_assert(g.config[2].is_int);
  assert_shape("x", 2, 2, 8);
  assert_shape("w", 2, 32, 128);
}
END_TEST

START_TEST(test_set_overrides_reevaluate_dependants) {
  write_model("m.json", config_model);
  load_ok("m.json", "hidden=64", NULL);
  ck_assert_double_eq(config("hidden"), 64);
  ck_assert_double_eq(config("head_dim"), 16);
  assert_shape("x", 2, 2, 16);
  assert_shape("w", 2, 64, 256);
  load_ok("m.json", "heads=hidden / 16", NULL);  // a --set value is an expression too
  ck_assert_double_eq(config("heads"), 2);
  ck_assert_double_eq(config("head_dim"), 16);
}
END_TEST

START_TEST(test_set_dependants_see_the_final_values) {
  // The first --set evaluates head_dim while hidden is still 32; head_dim must still
  // follow the later hidden=64.
  write_model("m.json", config_model);
  load_ok("m.json", "mlp=head_dim * 2", "hidden=64", NULL);
  ck_assert_double_eq(config("hidden"), 64);
  ck_assert_double_eq(config("head_dim"), 16);
  assert_shape("x", 2, 2, 16);
}
END_TEST

START_TEST(test_set_rejects_unknown_entry) {
  write_model("m.json", config_model);
  load_fails("m.json",
             "--set hiden: the model has no config entry \"hiden\" (it has: hidden, heads, "
             "head_dim, mlp)",
             "hiden=3", NULL);
}
END_TEST

START_TEST(test_set_rejects_bad_expression) {
  write_model("m.json", config_model);
  load_fails("m.json", "--set hidden: expression \"3 +\": unexpected end at column 4",
             "hidden=3 +", NULL);
}
END_TEST

START_TEST(test_config_defined_in_terms_of_itself) {
  write_model("m.json",
              "{'config': {'a': 'a + 1'},\n"
              " 'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': ['a']}]}");
  load_fails("m.json", "m.json: config.a: defined in terms of itself", NULL);
  write_model("n.json",
              "{'config': {'a': 'b * 2', 'b': 'a'},\n"
              " 'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [1]}]}");
  load_fails("n.json", "defined in terms of itself", NULL);
}
END_TEST

START_TEST(test_config_error_names_the_entry) {
  write_model("m.json",
              "{'config': {'a': 2, 'b': 'a +'},\n"
              " 'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [1]}]}");
  load_fails("m.json", "m.json: config.b: expression \"a +\": unexpected end at column 4", NULL);
}
END_TEST

START_TEST(test_shape_must_be_whole_naming_the_json_path) {
  write_model("m.json",
              "{'config': {'batch': 2, 'hidden': 32},\n"
              " 'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': ['batch', 'hidden / 3']}]}");
  load_fails("m.json",
             "m.json: inputs[0]: shape[1]: \"hidden / 3\" is 10.6667, not a whole number", NULL);
}
END_TEST

START_TEST(test_shape_must_be_positive) {
  write_model("m.json",
              "{'config': {'n': 2},\n"
              " 'params': [{'name': 'w', 'shape': [3, 'n - 2'], 'init': 'zeros'}]}");
  load_fails("m.json", "m.json: params[0]: shape[1]: \"n - 2\" is 0; dims must be positive", NULL);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Templates and blocks.

// `layers` copies of one block, chained h.0 -> h.1 -> ... through templates {i} and {i+1}.
static const char *const chain_model =
    "{'config': {'hidden': 4, 'layers': 3},\n"
    " 'inputs': [{'name': 'h.0', 'dtype': 'f32', 'shape': [2, 'hidden']}],\n"
    " 'blocks': {'layer': {'args': ['x', 'y', 'p'],\n"
    "   'params': [{'name': '{p}.w', 'shape': ['hidden', 'hidden'], 'init': 'normal(0.02)'}],\n"
    "   'nodes': [{'op': 'matmul', 'in': ['{x}', '{p}.w'], 'out': '{y}'}]}},\n"
    " 'nodes': [{'block': 'layer', 'repeat': 'layers',\n"
    "            'args': {'x': 'h.{i}', 'y': 'h.{i+1}', 'p': 'layer.{i}'}}],\n"
    " 'outputs': ['h.3']}";

START_TEST(test_repeat_expands_templates_per_iteration) {
  write_model("m.json", chain_model);
  load_ok("m.json", NULL);
  ck_assert_int_eq(count_params(), 3);
  for (int i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof name, "layer.%d.w", i);
    assert_shape(name, 2, 4, 4);
    snprintf(name, sizeof name, "h.%d", i + 1);
    ck_assert_int_eq(node(name)->op, IR_OP_MATMUL);
  }
  ck_assert_ptr_null(ir_graph_find(&g, "layer.3.w"));
  ck_assert_ptr_eq(node("h.2")->in[0], node("h.1"));
  ck_assert_int_eq(ir_count_params(&g), 3 * 16);
  ck_assert_ptr_eq(g.outputs[0], node("h.3"));
}
END_TEST

START_TEST(test_repeat_count_follows_set) {
  write_model("m.json", chain_model);
  load_fails("m.json", "outputs[0]: \"h.3\" is not defined", "layers=2", NULL);
  load_ok("m.json", "layers=5", NULL);
  ck_assert_int_eq(count_params(), 5);
  ck_assert_ptr_nonnull(ir_graph_find(&g, "h.5"));
}
END_TEST

START_TEST(test_index_names_the_loop_variable_inside_the_block) {
  // The index is visible inside the block: in names ({k}) and in expressions (k + 1).
  write_model("m.json",
              "{'blocks': {'bias': {'args': ['p'],\n"
              "   'params': [{'name': '{p}.{k}.bias', 'shape': ['k + 1'], 'init': 'zeros'}]}},\n"
              " 'nodes': [{'block': 'bias', 'repeat': 3, 'index': 'k', 'args': {'p': 'enc'}}]}");
  load_ok("m.json", NULL);
  ck_assert_int_eq(count_params(), 3);
  assert_shape("enc.0.bias", 1, 1);
  assert_shape("enc.1.bias", 1, 2);
  assert_shape("enc.2.bias", 1, 3);
}
END_TEST

START_TEST(test_nested_blocks_pass_arguments_down) {
  write_model("m.json",
              "{'config': {'d': 3},\n"
              " 'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2, 'd']}],\n"
              " 'blocks': {\n"
              "  'lin': {'args': ['x', 'y', 'p', 'n'],\n"
              "    'params': [{'name': '{p}.w', 'shape': ['d', 'n'], 'init': 'zeros'}],\n"
              "    'nodes': [{'op': 'matmul', 'in': ['{x}', '{p}.w'], 'out': '{y}'}]},\n"
              "  'two': {'args': ['x', 'y', 'p'],\n"
              "    'nodes': [{'block': 'lin', 'args': {'x': '{x}', 'y': '{y}:mid', 'p': '{p}.a', 'n': 'd'}},\n"
              "              {'block': 'lin', 'args': {'x': '{y}:mid', 'y': '{y}', 'p': '{p}.b', 'n': 5}}]}},\n"
              " 'nodes': [{'block': 'two', 'args': {'x': 'x', 'y': 'out', 'p': 'enc'}}],\n"
              " 'outputs': ['out']}");
  load_ok("m.json", NULL);
  assert_shape("enc.a.w", 2, 3, 3);
  assert_shape("enc.b.w", 2, 3, 5);
  assert_shape("out:mid", 2, 2, 3);
  assert_shape("out", 2, 2, 5);
  ck_assert_ptr_eq(node("out")->in[0], node("out:mid"));
}
END_TEST

START_TEST(test_block_error_names_the_block_and_the_call) {
  // Iteration i makes w [hidden, hidden + i]; the third product no longer fits.
  write_model("m.json",
              "{'config': {'hidden': 4},\n"
              " 'inputs': [{'name': 'h.0', 'dtype': 'f32', 'shape': [2, 'hidden']}],\n"
              " 'blocks': {'layer': {'args': ['p'],\n"
              "   'params': [{'name': '{p}.w', 'shape': ['hidden', 'hidden + i'], 'init': 'zeros'}],\n"
              "   'nodes': [{'op': 'matmul', 'in': ['h.{i}', '{p}.w'], 'out': 'h.{i+1}'}]}},\n"
              " 'nodes': [{'block': 'layer', 'repeat': 3, 'args': {'p': 'l{i}'}}]}");
  load_fails("m.json", NULL, NULL);
  char want[600];
  snprintf(want, sizeof want,
           "%s: blocks.layer.nodes[0] (from %s: nodes[0] i=2) \"h.3\": matmul: inner dims "
           "differ (5 vs 4) for [2,5] x [4,6]", path_of("m.json"), path_of("m.json"));
  ck_assert_str_eq(d.msg, want);
}
END_TEST

START_TEST(test_template_must_be_whole) {
  write_model("m.json",
              "{'params': [{'name': 'p{1 / 2}', 'shape': [1], 'init': 'zeros'}]}");
  load_fails("m.json", "m.json: params[0]: name: \"p{1 / 2}\": {1 / 2} is 0.5, not a whole number",
             NULL);
}
END_TEST

START_TEST(test_block_rejects_missing_argument) {
  write_model("m.json", "{'blocks': {'b': {'args': ['x', 'p'],\n"
                        "   'params': [{'name': '{p}', 'shape': [1], 'init': 'zeros'}]}},\n"
                        " 'nodes': [{'block': 'b', 'args': {'x': 'in'}}]}");
  load_fails("m.json", "m.json: nodes[0]: block \"b\" needs argument \"p\"", NULL);
}
END_TEST

START_TEST(test_block_rejects_unknown_argument) {
  write_model("m.json", "{'blocks': {'b': {'args': ['p'],\n"
                        "   'params': [{'name': '{p}', 'shape': [1], 'init': 'zeros'}]}},\n"
                        " 'nodes': [{'block': 'b', 'args': {'p': 'w', 'q': 1}}]}");
  load_fails("m.json", "m.json: nodes[0]: args: block \"b\" has no argument \"q\"", NULL);
}
END_TEST

START_TEST(test_unknown_block_is_an_error) {
  write_model("m.json", "{'blocks': {'b': {}},\n"
                        " 'nodes': [{'block': 'c'}]}");
  load_fails("m.json", "m.json: nodes[0]: unknown block \"c\"", NULL);
}
END_TEST

START_TEST(test_block_that_calls_itself_is_an_error) {
  write_model("m.json", "{'blocks': {'b': {'nodes': [{'block': 'b'}]}},\n"
                        " 'nodes': [{'block': 'b'}]}");
  load_fails("m.json", "m.json: blocks.b: blocks nested deeper than 32 (a block calls itself?)", NULL);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Includes.

static const char *const base_model =
    "{'include': 'more.json',\n"
    " 'config': {'hidden': 8, 'heads': 2, 'head_dim': 'hidden / heads'},\n"
    " 'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [1, 'hidden']}],\n"
    " 'blocks': {'lin': {'args': ['x', 'y', 'p'],\n"
    "   'params': [{'name': '{p}.w', 'shape': ['hidden', 'head_dim'], 'init': 'ones'}],\n"
    "   'nodes': [{'op': 'matmul', 'in': ['{x}', '{p}.w'], 'out': '{y}'}]}}}";

static const char *const more_model =
    "{'config': {'extra': 3},\n"
    " 'params': [{'name': 'e', 'shape': ['extra'], 'init': 'zeros'}]}";

START_TEST(test_include_resolves_relative_paths_and_config_is_overridden) {
  write_model("parts/base.json", base_model);
  write_model("parts/more.json", more_model);  // relative to parts/, not to m.json
  write_model("m.json", "{'include': 'parts/base.json',\n"
                        " 'config': {'hidden': 16},\n"
                        " 'nodes': [{'block': 'lin', 'args': {'x': 'x', 'y': 'y', 'p': 'l'}}],\n"
                        " 'outputs': ['y']}");
  load_ok("m.json", NULL);
  ck_assert_double_eq(config("hidden"), 16);
  ck_assert_double_eq(config("head_dim"), 8);
  assert_shape("x", 2, 1, 16);
  assert_shape("l.w", 2, 16, 8);
  assert_shape("y", 2, 1, 8);
  assert_shape("e", 1, 3);
  ck_assert_ptr_nonnull(strstr(node("e")->where, "parts/more.json: params[0]"));
}
END_TEST

START_TEST(test_include_list_loads_each_file) {
  write_model("parts/base.json", base_model);
  write_model("parts/more.json", more_model);
  write_model("other.json", "{'params': [{'name': 'o', 'shape': [2], 'init': 'ones'}]}");
  write_model("m.json", "{'include': ['parts/base.json', 'other.json']}");
  load_ok("m.json", NULL);
  assert_shape("o", 1, 2);
  assert_shape("e", 1, 3);
}
END_TEST

START_TEST(test_include_cycle_is_an_error) {
  write_model("a.json", "{'include': 'b.json', 'params': [{'name': 'w', 'shape': [1], 'init': 'zeros'}]}");
  write_model("b.json", "{'include': 'a.json'}");
  load_fails("a.json", "a.json: includes itself", NULL);
}
END_TEST

START_TEST(test_include_of_missing_file_is_an_error) {
  write_model("m.json", "{'include': 'nope.json'}");
  load_fails("m.json", "nope.json: cannot open", NULL);
}
END_TEST

START_TEST(test_block_defined_twice_is_an_error) {
  write_model("parts/base.json", base_model);
  write_model("parts/more.json", more_model);
  write_model("m.json", "{'include': 'parts/base.json',\n"
                        " 'blocks': {'lin': {'args': []}}}");
  load_fails("m.json", NULL, NULL);
  char want[600];
  snprintf(want, sizeof want, "%s: blocks.lin: already defined in %s", path_of("m.json"),
           path_of("parts/base.json"));
  ck_assert_str_eq(d.msg, want);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Strictness: unknown keys and other structural errors.

START_TEST(test_unknown_top_level_key_is_an_error) {
  write_model("m.json", "{'nodez': []}");
  load_fails("m.json",
             "m.json: unknown key \"nodez\" (expected one of: format, name, description, "
             "include, config, inputs, params, blocks, nodes, outputs, losses, output_groups)", NULL);
}
END_TEST

START_TEST(test_unknown_node_key_is_an_error) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'nodes': [{'op': 'neg', 'in': ['x'], 'out': 'y', 'attr': {}}]}");
  load_fails("m.json", "m.json: nodes[0]: unknown key \"attr\" (expected one of: op, in, out, "
             "attrs, doc)", NULL);
}
END_TEST

START_TEST(test_unknown_param_key_is_an_error) {
  write_model("m.json", "{'params': [{'name': 'w', 'shape': [2], 'inti': 'zeros'}]}");
  load_fails("m.json", "m.json: params[0]: unknown key \"inti\"", NULL);
}
END_TEST

START_TEST(test_unknown_attribute_is_an_error) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2, 2]}],\n"
                        " 'nodes': [{'op': 'matmul', 'in': ['x', 'x'], 'out': 'y',\n"
                        "            'attrs': {'transpose': true}}]}");
  load_fails("m.json", "m.json: nodes[0] \"y\": matmul has no attribute \"transpose\" (it has: "
             "transpose_a, transpose_b, bf16, int8)", NULL);
}
END_TEST

START_TEST(test_unknown_op_is_an_error) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'nodes': [{'op': 'negate', 'in': ['x'], 'out': 'y'}]}");
  load_fails("m.json", "m.json: nodes[0]: unknown op \"negate\"", NULL);
}
END_TEST

START_TEST(test_name_defined_twice_is_an_error) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'nodes': [{'op': 'neg', 'in': ['x'], 'out': 'y'},\n"
                        "           {'op': 'exp', 'in': ['x'], 'out': 'y'}]}");
  load_fails("m.json", "m.json: nodes[1] \"y\": name already defined at", NULL);
  ck_assert_ptr_nonnull(strstr(d.msg, "m.json: nodes[0]"));
}
END_TEST

START_TEST(test_undefined_input_is_an_error) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'nodes': [{'op': 'add', 'in': ['x', 'nope'], 'out': 'y'}]}");
  load_fails("m.json", "m.json: nodes[0] \"y\": input \"nope\" is not defined", NULL);
}
END_TEST

START_TEST(test_shape_error_names_file_path_and_tensor) {
  write_model("m.json", "{'inputs': [{'name': 'a', 'dtype': 'f32', 'shape': [2, 3]},\n"
                        "            {'name': 'b', 'dtype': 'f32', 'shape': [4, 5]}],\n"
                        " 'nodes': [{'op': 'neg', 'in': ['a'], 'out': 'x'},\n"
                        "           {'op': 'matmul', 'in': ['x', 'b'], 'out': 'y'}]}");
  load_fails("m.json", NULL, NULL);
  char want[600];
  snprintf(want, sizeof want,
           "%s: nodes[1] \"y\": matmul: inner dims differ (3 vs 4) for [2,3] x [4,5]",
           path_of("m.json"));
  ck_assert_str_eq(d.msg, want);
}
END_TEST

START_TEST(test_cycle_in_the_file_names_the_nodes) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'nodes': [{'op': 'add', 'in': ['x', 'b'], 'out': 'a'},\n"
                        "           {'op': 'exp', 'in': ['a'], 'out': 'b'}]}");
  load_fails("m.json", "m.json: nodes[0] \"a\": the graph has a cycle: \"a\" -> \"b\" -> \"a\"",
             NULL);
}
END_TEST

START_TEST(test_nodes_may_use_tensors_defined_later) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2, 3]}],\n"
                        " 'nodes': [{'op': 'exp', 'in': ['y'], 'out': 'z'},\n"
                        "           {'op': 'neg', 'in': ['x'], 'out': 'y'}],\n"
                        " 'outputs': ['z']}");
  load_ok("m.json", NULL);
  ck_assert_int_lt(node("y")->id, node("z")->id);
  ck_assert_ptr_eq(node("z")->in[0], node("y"));
  assert_shape("z", 2, 2, 3);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Outputs and losses.

static const char *const heads_model =
    "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2, 3]},\n"
    "            {'name': 'labels', 'dtype': 'i64', 'shape': [2]}],\n"
    " 'params': [{'name': 'w', 'shape': [3, 4], 'init': 'normal(0.02)'}],\n"
    " 'nodes': [{'op': 'matmul', 'in': ['x', 'w'], 'out': 'logits'},\n"
    "           {'op': 'softmax', 'in': 'logits', 'out': 'probs'},\n"
    "           {'op': 'cross_entropy', 'in': ['logits', 'labels'], 'out': 'ce'}],\n"
    " 'outputs': ['logits', 'probs'],\n"
    " 'losses': {'loss': 'ce'}}";

START_TEST(test_outputs_and_losses_resolve_to_nodes) {
  write_model("m.json", heads_model);
  load_ok("m.json", NULL);
  ck_assert_int_eq(g.n_outputs, 2);
  ck_assert_ptr_eq(g.outputs[0], node("logits"));
  ck_assert_ptr_eq(g.outputs[1], node("probs"));
  ck_assert_int_eq(g.n_losses, 1);
  ck_assert_str_eq(g.losses[0].name, "loss");
  ck_assert_ptr_eq(g.losses[0].node, node("ce"));
}
END_TEST

START_TEST(test_undefined_output_is_an_error) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'outputs': ['x', 'y']}");
  load_fails("m.json", "m.json: outputs[1]: \"y\" is not defined", NULL);
}
END_TEST

START_TEST(test_output_listed_twice_is_an_error) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'outputs': ['x', 'x']}");
  load_fails("m.json", "m.json: outputs[1]: \"x\" is listed twice", NULL);
}
END_TEST

START_TEST(test_undefined_loss_is_an_error) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'losses': {'loss': 'nope'}}");
  load_fails("m.json", "m.json: losses.loss: \"nope\" is not defined", NULL);
}
END_TEST

START_TEST(test_loss_must_be_a_scalar) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'losses': {'loss': 'x'}}");
  load_fails("m.json", "m.json: loss \"loss\" is \"x\" of f32[2]; a loss must be an f32 scalar",
             NULL);
}
END_TEST

START_TEST(test_outputs_must_be_an_array) {
  write_model("m.json", "{'inputs': [{'name': 'x', 'dtype': 'f32', 'shape': [2]}],\n"
                        " 'outputs': 'x'}");
  load_fails("m.json", "m.json: outputs: must be an array, not a string", NULL);
}
END_TEST

START_TEST(test_available_marks_what_given_inputs_compute) {
  write_model("m.json", heads_model);
  load_ok("m.json", NULL);
  bool *given = calloc((size_t)g.n_nodes, sizeof *given);
  bool *avail = calloc((size_t)g.n_nodes, sizeof *avail);
  given[node("x")->id] = true;
  fe_available(&g, given, avail);
  ck_assert(avail[node("x")->id]);
  ck_assert(avail[node("w")->id]);  // parameters are always there
  ck_assert(avail[node("logits")->id]);
  ck_assert(avail[node("probs")->id]);
  ck_assert(!avail[node("labels")->id]);
  ck_assert(!avail[node("ce")->id]);
  given[node("labels")->id] = true;
  fe_available(&g, given, avail);
  ck_assert(avail[node("ce")->id]);
  free(given);
  free(avail);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Parameter initialisers.

static const char *const init_model =
    "{'config': {'init_std': 0.05},\n"
    " 'params': [{'name': 'a', 'shape': [100, 100], 'init': 'normal(0.02)'},\n"
    "            {'name': 'b', 'shape': [3], 'init': 'normal(init_std)'},\n"
    "            {'name': 'z', 'shape': [2, 3], 'init': 'zeros'},\n"
    "            {'name': 'o', 'shape': [4], 'init': 'ones'},\n"
    "            {'name': 'c', 'shape': [100, 100], 'init': 'copy(a)'}]}";

START_TEST(test_initialisers_parse) {
  write_model("m.json", init_model);
  load_ok("m.json", NULL);
  ck_assert_int_eq(node("a")->init.kind, IR_INIT_NORMAL);
  ck_assert_double_eq(node("a")->init.std, 0.02);
  ck_assert_int_eq(node("b")->init.kind, IR_INIT_NORMAL);
  ck_assert_double_eq(node("b")->init.std, 0.05);
  ck_assert_int_eq(node("z")->init.kind, IR_INIT_ZEROS);
  ck_assert_int_eq(node("o")->init.kind, IR_INIT_ONES);
  ck_assert_int_eq(node("c")->init.kind, IR_INIT_COPY);
  ck_assert_str_eq(node("c")->init.copy_of, "a");
}
END_TEST

START_TEST(test_unknown_initialiser_is_an_error) {
  write_model("m.json", "{'params': [{'name': 'w', 'shape': [2], 'init': 'uniform(1)'}]}");
  load_fails("m.json", "m.json: params[0]: init: \"uniform(1)\" is not one of normal(STD), zeros, "
             "ones, copy(NAME)", NULL);
}
END_TEST

START_TEST(test_copy_of_a_missing_parameter_is_an_error) {
  write_model("m.json", "{'params': [{'name': 'w', 'shape': [2], 'init': 'copy(v)'}]}");
  load_fails("m.json", "\"w\": init copies \"v\", which is not a parameter", NULL);
}
END_TEST

static void init_values(uint64_t seed, IrValues *vals) {
  ir_values_init(vals, &g);
  ck_assert_msg(fe_init_params(&g, seed, vals, &d), "%s", d.msg);
}

static const double *value(const IrValues *vals, const char *name) {
  return vals->v[node(name)->id];
}

START_TEST(test_init_is_deterministic_for_a_seed) {
  write_model("m.json", init_model);
  load_ok("m.json", NULL);
  IrValues v1, v2, v3;
  init_values(1, &v1);
  init_values(1, &v2);
  init_values(2, &v3);
  ck_assert_mem_eq(value(&v1, "a"), value(&v2, "a"), 10000 * sizeof(double));
  ck_assert_mem_eq(value(&v1, "b"), value(&v2, "b"), 3 * sizeof(double));
  int same = 0;
  for (int i = 0; i < 10000; i++) same += value(&v1, "a")[i] == value(&v3, "a")[i];
  ck_assert_int_lt(same, 10);  // another seed, other values
  ir_values_free(&v1);
  ir_values_free(&v2);
  ir_values_free(&v3);
}
END_TEST

START_TEST(test_init_zeros_ones_and_copies_are_exact) {
  write_model("m.json", init_model);
  load_ok("m.json", NULL);
  IrValues v;
  init_values(7, &v);
  for (int i = 0; i < 6; i++) ck_assert_double_eq(value(&v, "z")[i], 0);
  for (int i = 0; i < 4; i++) ck_assert_double_eq(value(&v, "o")[i], 1);
  ck_assert_mem_eq(value(&v, "c"), value(&v, "a"), 10000 * sizeof(double));
  ir_values_free(&v);
}
END_TEST

START_TEST(test_init_follows_chains_of_copies) {
  // "first" copies "second", which copies "base": both end with base's values, whatever
  // the order they are declared in.
  write_model("m.json", "{'params': [{'name': 'first', 'shape': [5], 'init': 'copy(second)'},\n"
                        "            {'name': 'second', 'shape': [5], 'init': 'copy(base)'},\n"
                        "            {'name': 'base', 'shape': [5], 'init': 'normal(1)'}]}");
  load_ok("m.json", NULL);
  IrValues v;
  init_values(3, &v);
  ck_assert_mem_eq(value(&v, "second"), value(&v, "base"), 5 * sizeof(double));
  ck_assert_mem_eq(value(&v, "first"), value(&v, "base"), 5 * sizeof(double));
  ir_values_free(&v);
}
END_TEST

START_TEST(test_init_copy_cycle_is_an_error) {
  write_model("m.json", "{'params': [{'name': 'a', 'shape': [5], 'init': 'copy(b)'},\n"
                        "            {'name': 'b', 'shape': [5], 'init': 'copy(a)'}]}");
  load_fails("m.json", "init copies form a cycle", NULL);
}
END_TEST

START_TEST(test_init_normal_has_the_given_std) {
  write_model("m.json", init_model);
  load_ok("m.json", NULL);
  IrValues v;
  init_values(11, &v);
  const double *a = value(&v, "a");
  double sum = 0, sq = 0;
  for (int i = 0; i < 10000; i++) sum += a[i];
  double mean = sum / 10000;
  for (int i = 0; i < 10000; i++) sq += (a[i] - mean) * (a[i] - mean);
  double std = sqrt(sq / 9999);
  ck_assert_msg(fabs(std - 0.02) < 0.002, "sample std %g, want 0.02 within 10%%", std);
  ck_assert_msg(fabs(mean) < 0.001, "sample mean %g, want about 0", mean);  // 5 standard errors
  ir_values_free(&v);
}
END_TEST

START_TEST(test_init_of_a_parameter_depends_only_on_its_name_and_the_seed) {
  write_model("m.json", init_model);
  write_model("alone.json", "{'params': [{'name': 'a', 'shape': [100, 100], 'init': 'normal(0.02)'}]}");
  load_ok("m.json", NULL);
  IrValues full;
  init_values(5, &full);
  double *a_full = malloc(10000 * sizeof(double));
  memcpy(a_full, value(&full, "a"), 10000 * sizeof(double));
  ir_values_free(&full);
  load_ok("alone.json", NULL);
  IrValues alone;
  init_values(5, &alone);
  ck_assert_mem_eq(value(&alone, "a"), a_full, 10000 * sizeof(double));
  ir_values_free(&alone);
  free(a_full);
}
END_TEST

// ---------------------------------------------------------------------------------------
// The real model files (run with the source root as working directory).

typedef struct {
  int64_t vocab, hidden, layers, intermediate, visual_dim, labels, max_positions, type_vocab;
} VbConfig;

static const VbConfig vb_base = {30522, 768, 12, 3072, 2048, 3129, 512, 2};

// One post-LayerNorm BERT layer: Q, K, V, attention output, two LayerNorms, the FFN.
static int64_t vb_layer(const VbConfig *c) {
  int64_t h = c->hidden, i = c->intermediate;
  return 4 * (h * h + h) + 2 * 2 * h + (h * i + i) + (i * h + h);
}

// Embeddings (word, position, token type, visual token type, visual position, visual
// projection, LayerNorm), the encoder and the pooler, as in Hugging Face VisualBertModel.
static int64_t vb_model(const VbConfig *c) {
  int64_t h = c->hidden;
  int64_t emb = c->vocab * h + 2 * c->max_positions * h + 2 * c->type_vocab * h +
                (c->visual_dim * h + h) + 2 * h;
  return emb + c->layers * vb_layer(c) + (h * h + h);
}

static int64_t vb_linear_head(const VbConfig *c) { return c->hidden * c->labels + c->labels; }

// The MLM transform (dense, LayerNorm), the decoder bias (weights tied to the word
// embeddings) and the sentence-image head.
static int64_t vb_pretrain_heads(const VbConfig *c) {
  int64_t h = c->hidden;
  return (h * h + h) + 2 * h + c->vocab + (2 * h + 2);
}

START_TEST(test_visualbert_vqa_has_the_hf_parameter_count) {
  load_model_ok("models/visualbert-vqa.json", NULL);
  ck_assert_int_eq(ir_count_params(&g), 113856825);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&vb_base) + vb_linear_head(&vb_base));
  assert_shape("logits", 2, 1, 3129);
  ck_assert_int_eq(g.n_losses, 1);
}
END_TEST

START_TEST(test_visualbert_pretrain_has_the_hf_parameter_count) {
  load_model_ok("models/visualbert-pretrain.json", NULL);
  ck_assert_int_eq(ir_count_params(&g), 112074812);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&vb_base) + vb_pretrain_heads(&vb_base));
  assert_shape("prediction_logits", 3, 1, 20, 30522);
  ck_assert_int_eq(g.n_losses, 3);
}
END_TEST

START_TEST(test_visualbert_vqa_late_has_the_hf_parameter_count) {
  load_model_ok("models/visualbert-vqa-late.json", NULL);
  ck_assert_int_eq(ir_count_params(&g), 120944697);
  ck_assert_int_eq(ir_count_params(&g),
                   vb_model(&vb_base) + vb_layer(&vb_base) + vb_linear_head(&vb_base));
}
END_TEST

// The base sizes with other region features and head width.
static VbConfig vb_base_with(int64_t visual_dim, int64_t labels) {
  VbConfig c = vb_base;
  c.visual_dim = visual_dim;
  c.labels = labels;
  return c;
}

START_TEST(test_visualbert_nlvr2_has_the_hf_parameter_count) {
  // 1024-dim region features and a two-way head.
  VbConfig c = vb_base_with(1024, 2);
  load_model_ok("models/visualbert-nlvr2.json", NULL);
  ck_assert_int_eq(ir_count_params(&g), 110665730);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&c) + vb_linear_head(&c));
}
END_TEST

START_TEST(test_visualbert_vcr_has_the_hf_parameter_count) {
  // 512-dim region features, `cls` Linear(hidden, 1); every (example, choice) pair is a
  // sequence of the encoder.
  VbConfig c = vb_base_with(512, 1);
  load_model_ok("models/visualbert-vcr.json", NULL);
  ck_assert_int_eq(ir_count_params(&g), 110271745);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&c) + vb_linear_head(&c));
  assert_shape("input_ids", 3, 1, 4, 20);
  assert_shape("visual_embeds", 4, 1, 4, 100, 512);
  assert_shape("hidden.12", 3, 4, 120, 768);
  assert_shape("logits", 2, 1, 4);
  load_model_ok("models/visualbert-vcr-late.json", "batch=2", "num_choices=3", NULL);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&c) + vb_layer(&c) + vb_linear_head(&c));
  assert_shape("text_hidden.12", 3, 6, 20, 768);
  assert_shape("logits", 2, 2, 3);
}
END_TEST

START_TEST(test_visualbert_flickr_has_the_hf_parameter_count) {
  // The pre-training heads (kept, unused) and the alignment's query and key, hidden wide.
  int64_t h = vb_base.hidden, align = 2 * (h * h + h);
  load_model_ok("models/visualbert-flickr.json", NULL);
  ck_assert_int_eq(ir_count_params(&g), 113255996);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&vb_base) + vb_pretrain_heads(&vb_base) + align);
  assert_shape("region_to_phrase_position", 2, 1, 120);
  assert_shape("logits", 3, 1, 120, 100);
  load_model_ok("models/visualbert-flickr-late.json", NULL);
  ck_assert_int_eq(ir_count_params(&g),
                   vb_model(&vb_base) + vb_layer(&vb_base) + vb_pretrain_heads(&vb_base) + align);
}
END_TEST

START_TEST(test_visualbert_inputs_declares_inputs_only) {
  // The six inputs of the single-sequence variants; config and blocks from the common file.
  load_model_ok("models/visualbert-inputs.json", NULL);
  ck_assert_int_eq(ir_count_params(&g), 0);
  assert_shape("visual_embeds", 3, 1, 100, 2048);
}
END_TEST

#define TINY "layers=2", "hidden=32", "heads=4", "intermediate=64", "vocab=100", \
             "max_positions=40", "text_len=6", "regions=5", "visual_dim=12", "num_labels=7"

static const VbConfig vb_tiny = {100, 32, 2, 64, 12, 7, 40, 2};

START_TEST(test_visualbert_models_load_with_a_tiny_config) {
  load_model_ok("models/visualbert-vqa.json", TINY, NULL);
  ck_assert_double_eq(config("head_dim"), 8);
  ck_assert_double_eq(config("seq_len"), 11);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&vb_tiny) + vb_linear_head(&vb_tiny));
  assert_shape("logits", 2, 1, 7);
  assert_shape("hidden.2", 3, 1, 11, 32);
  ck_assert_ptr_null(ir_graph_find(&g, "hidden.3"));

  load_model_ok("models/visualbert-pretrain.json", TINY, NULL);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&vb_tiny) + vb_pretrain_heads(&vb_tiny));
  assert_shape("prediction_logits", 3, 1, 6, 100);

  load_model_ok("models/visualbert-vqa-late.json", TINY, NULL);
  ck_assert_int_eq(ir_count_params(&g),
                   vb_model(&vb_tiny) + vb_layer(&vb_tiny) + vb_linear_head(&vb_tiny));
  assert_shape("text_hidden.2", 3, 1, 6, 32);  // block late_fusion: the layers see the text alone
  assert_shape("hidden.2", 3, 1, 11, 32);       // the additional layer's [text; regions]
  load_model_ok("models/visualbert-pretrain-late.json", TINY, NULL);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&vb_tiny) + vb_layer(&vb_tiny) + vb_pretrain_heads(&vb_tiny));
  assert_shape("prediction_logits", 3, 1, 6, 100);

  load_model_ok("models/visualbert-nlvr2.json", TINY, NULL);
  ck_assert_int_eq(ir_count_params(&g), vb_model(&vb_tiny) + vb_linear_head(&vb_tiny));
}
END_TEST

// ---------------------------------------------------------------------------------------

static Suite *frontend_suite(void) {
  Suite *s = suite_create("frontend");

  TCase *expr = tcase_create("config arithmetic");
  tcase_add_test(expr, test_expr_arithmetic_and_precedence);
  tcase_add_test(expr, test_expr_unary_minus_and_plus);
  tcase_add_test(expr, test_expr_floor_division_and_modulo);
  tcase_add_test(expr, test_expr_modulo_agrees_with_floor_division);
  tcase_add_test(expr, test_expr_sqrt);
  tcase_add_test(expr, test_expr_rejects_unknown_name);
  tcase_add_test(expr, test_expr_rejects_division_by_zero);
  tcase_add_test(expr, test_expr_syntax_errors_give_the_column);
  tcase_add_test(expr, test_expr_rejects_deep_nesting);
  tcase_add_test(expr, test_expr_whole_accepts_integers_only);
  tcase_add_test(expr, test_parse_set_splits_name_and_value);
  suite_add_tcase(s, expr);

  TCase *cfg = tcase_create("config and --set");
  tcase_add_checked_fixture(cfg, setup, teardown);
  tcase_add_test(cfg, test_config_entries_refer_to_other_entries);
  tcase_add_test(cfg, test_set_overrides_reevaluate_dependants);
  tcase_add_test(cfg, test_set_dependants_see_the_final_values);
  tcase_add_test(cfg, test_set_rejects_unknown_entry);
  tcase_add_test(cfg, test_set_rejects_bad_expression);
  tcase_add_test(cfg, test_config_defined_in_terms_of_itself);
  tcase_add_test(cfg, test_config_error_names_the_entry);
  tcase_add_test(cfg, test_shape_must_be_whole_naming_the_json_path);
  tcase_add_test(cfg, test_shape_must_be_positive);
  suite_add_tcase(s, cfg);

  TCase *blocks = tcase_create("templates and blocks");
  tcase_add_checked_fixture(blocks, setup, teardown);
  tcase_add_test(blocks, test_repeat_expands_templates_per_iteration);
  tcase_add_test(blocks, test_repeat_count_follows_set);
  tcase_add_test(blocks, test_index_names_the_loop_variable_inside_the_block);
  tcase_add_test(blocks, test_nested_blocks_pass_arguments_down);
  tcase_add_test(blocks, test_block_error_names_the_block_and_the_call);
  tcase_add_test(blocks, test_template_must_be_whole);
  tcase_add_test(blocks, test_block_rejects_missing_argument);
  tcase_add_test(blocks, test_block_rejects_unknown_argument);
  tcase_add_test(blocks, test_unknown_block_is_an_error);
  tcase_add_test(blocks, test_block_that_calls_itself_is_an_error);
  suite_add_tcase(s, blocks);

  TCase *inc = tcase_create("includes");
  tcase_add_checked_fixture(inc, setup, teardown);
  tcase_add_test(inc, test_include_resolves_relative_paths_and_config_is_overridden);
  tcase_add_test(inc, test_include_list_loads_each_file);
  tcase_add_test(inc, test_include_cycle_is_an_error);
  tcase_add_test(inc, test_include_of_missing_file_is_an_error);
  tcase_add_test(inc, test_block_defined_twice_is_an_error);
  suite_add_tcase(s, inc);

  TCase *strict = tcase_create("structure and errors");
  tcase_add_checked_fixture(strict, setup, teardown);
  tcase_add_test(strict, test_unknown_top_level_key_is_an_error);
  tcase_add_test(strict, test_unknown_node_key_is_an_error);
  tcase_add_test(strict, test_unknown_param_key_is_an_error);
  tcase_add_test(strict, test_unknown_attribute_is_an_error);
  tcase_add_test(strict, test_unknown_op_is_an_error);
  tcase_add_test(strict, test_name_defined_twice_is_an_error);
  tcase_add_test(strict, test_undefined_input_is_an_error);
  tcase_add_test(strict, test_shape_error_names_file_path_and_tensor);
  tcase_add_test(strict, test_cycle_in_the_file_names_the_nodes);
  tcase_add_test(strict, test_nodes_may_use_tensors_defined_later);
  suite_add_tcase(s, strict);

  TCase *out = tcase_create("outputs and losses");
  tcase_add_checked_fixture(out, setup, teardown);
  tcase_add_test(out, test_outputs_and_losses_resolve_to_nodes);
  tcase_add_test(out, test_undefined_output_is_an_error);
  tcase_add_test(out, test_output_listed_twice_is_an_error);
  tcase_add_test(out, test_undefined_loss_is_an_error);
  tcase_add_test(out, test_loss_must_be_a_scalar);
  tcase_add_test(out, test_outputs_must_be_an_array);
  tcase_add_test(out, test_available_marks_what_given_inputs_compute);
  suite_add_tcase(s, out);

  TCase *init = tcase_create("initialisers");
  tcase_add_checked_fixture(init, setup, teardown);
  tcase_add_test(init, test_initialisers_parse);
  tcase_add_test(init, test_unknown_initialiser_is_an_error);
  tcase_add_test(init, test_copy_of_a_missing_parameter_is_an_error);
  tcase_add_test(init, test_init_is_deterministic_for_a_seed);
  tcase_add_test(init, test_init_zeros_ones_and_copies_are_exact);
  tcase_add_test(init, test_init_follows_chains_of_copies);
  tcase_add_test(init, test_init_copy_cycle_is_an_error);
  tcase_add_test(init, test_init_normal_has_the_given_std);
  tcase_add_test(init, test_init_of_a_parameter_depends_only_on_its_name_and_the_seed);
  suite_add_tcase(s, init);

  TCase *models = tcase_create("model files");
  tcase_add_checked_fixture(models, setup, teardown);
  tcase_add_test(models, test_visualbert_vqa_has_the_hf_parameter_count);
  tcase_add_test(models, test_visualbert_pretrain_has_the_hf_parameter_count);
  tcase_add_test(models, test_visualbert_vqa_late_has_the_hf_parameter_count);
  tcase_add_test(models, test_visualbert_nlvr2_has_the_hf_parameter_count);
  tcase_add_test(models, test_visualbert_inputs_declares_inputs_only);
  tcase_add_test(models, test_visualbert_vcr_has_the_hf_parameter_count);
  tcase_add_test(models, test_visualbert_flickr_has_the_hf_parameter_count);
  tcase_add_test(models, test_visualbert_models_load_with_a_tiny_config);
  suite_add_tcase(s, models);
  return s;
}

int main(void) { return check_run(frontend_suite()); }
