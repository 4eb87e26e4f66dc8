// The catalogue of bad inputs: runs the kiln binary on broken model files (tests/bad/),
// corrupt tensor files (written here at run time from a valid model's weights) and bad
// command lines, and holds it to its contract: exit 1 with a message naming the place for a
// bad file, exit 2 for a bad command line, 0 for every --help; never a crash, a hang (20 s),
// a sanitizer report or an output file left behind.
//
// KILN is the binary (default ./build/kiln), KILN_SRC the source root (default ".").
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/check_run.h"

#define HANG_SECONDS 20
#define MAX_ARGS 16
#define MAX_EXPECT 6

static const char *g_kiln, *g_src;
// Set by a test: the child leaves OUT.tmp.<its PID> for kiln (the same process) to meet, as a
// run killed while writing OUT leaves for a later process that gets its PID.
static const char *g_stale_tmp_for;
static char g_dir[4096];  // per-run temporary directory: tensor files, outputs, stderr

// --- running kiln ---------------------------------------------------------------------

// Expands a case's argument: "bad/F" is a file of tests/bad/, "models/F" a model of the
// source tree, "tmp/F" a file of the temporary directory; anything else is itself.
static const char *expand(const char *arg, char *buf, size_t cap) {
  int n;
  if (!strncmp(arg, "bad/", 4)) n = snprintf(buf, cap, "%s/tests/%s", g_src, arg);
  else if (!strncmp(arg, "models/", 7)) n = snprintf(buf, cap, "%s/%s", g_src, arg);
  else if (!strncmp(arg, "tmp/", 4)) n = snprintf(buf, cap, "%s/%s", g_dir, arg + 4);
  else return arg;
  ck_assert_msg(n >= 0 && (size_t)n < cap, "path too long: %s", arg);
  return buf;
}

typedef struct Run {
  bool hung;
  int status;     // from waitpid
  char err[16384];  // stderr (truncated)
} Run;

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

// Runs kiln with args (NULL-terminated) and env (NAME=VALUE, or NULL) added to its
// environment, stdout to /dev/null and stderr captured; kills it after HANG_SECONDS.
static void run_kiln(const char *const *args, const char *env, Run *r) {
  char bufs[MAX_ARGS][4096];
  char *argv[MAX_ARGS + 2];
  int n = 0;
  argv[n++] = (char *)g_kiln;
  for (int i = 0; args[i]; i++) {
    ck_assert_int_lt(i, MAX_ARGS);
    argv[n++] = (char *)expand(args[i], bufs[i], sizeof bufs[i]);
  }
  argv[n] = NULL;

  char err_path[4200];
  snprintf(err_path, sizeof err_path, "%s/stderr.%ld", g_dir, (long)getpid());
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int out = open("/dev/null", O_WRONLY), err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0) _exit(127);
    if (g_stale_tmp_for) {
      char stale[4300];
      snprintf(stale, sizeof stale, "%s.tmp.%ld", g_stale_tmp_for, (long)getpid());
      int fd = open(stale, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0) _exit(126);
      close(fd);
    }
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    // An allocation too large for memory must fail like malloc does, not abort under ASan.
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[2048];
    snprintf(opts, sizeof opts, "%s%sallocator_may_return_null=1", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    if (env) putenv((char *)env);
    execv(g_kiln, argv);
    fprintf(stderr, "test_bad_inputs: cannot run %s\n", g_kiln);
    _exit(127);
  }
  r->hung = false;
  for (long waited = 0;; waited += 10) {
    pid_t w = waitpid(pid, &r->status, WNOHANG);
    ck_assert_int_ge(w, 0);
    if (w == pid) break;
    if (waited >= HANG_SECONDS * 1000L) {
      kill(pid, SIGKILL);
      waitpid(pid, &r->status, 0);
      r->hung = true;
      break;
    }
    sleep_ms(10);
  }
  r->err[0] = 0;
  FILE *f = fopen(err_path, "rb");
  if (f) {
    size_t got = fread(r->err, 1, sizeof r->err - 1, f);
    r->err[got] = 0;
    fclose(f);
  }
  remove(err_path);
}

// --- the tensor files the cases read, written at run time -----------------------------

static void write_file(const char *name, const void *bytes, size_t n) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", g_dir, name);
  FILE *f = fopen(p, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

static void *read_file(const char *name, size_t *n) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", g_dir, name);
  FILE *f = fopen(p, "rb");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
  long len = ftell(f);
  ck_assert_int_ge(len, 0);
  rewind(f);
  void *buf = malloc((size_t)len + 1);
  ck_assert_ptr_nonnull(buf);
  ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return buf;
}

// A safetensors file: an 8-byte little-endian header length (hlen), the header, the data.
static void write_st_hlen(const char *name, uint64_t hlen, const char *header, const void *data,
                          size_t n) {
  size_t hn = strlen(header), total = 8 + hn + n;
  unsigned char *buf = malloc(total);
  ck_assert_ptr_nonnull(buf);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(buf + 8, header, hn);
  if (n) memcpy(buf + 8 + hn, data, n);
  write_file(name, buf, total);
  free(buf);
}

static void write_st(const char *name, const char *header, const void *data, size_t n) {
  write_st_hlen(name, strlen(header), header, data, n);
}

// tiny_ok.json's inputs: x f32[2,4] then ids i64[2], packed (48 bytes).
typedef struct {
  float x[8];
  int64_t ids[2];
} TinyInputs;

#define X_IN "\"x\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,32]}"
#define IDS_IN "\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[32,48]}"

static void write_input_files(void) {
  TinyInputs in = {{0, 1, 2, 3, 4, 5, 6, 7}, {1, 4}};
  write_st("in_ok.safetensors", "{" X_IN "," IDS_IN "}", &in, sizeof in);

  TinyInputs out_of_range = in;
  out_of_range.ids[1] = 7;  // the table has 5 rows
  write_st("in_id_out_of_range.safetensors", "{" X_IN "," IDS_IN "}", &out_of_range,
           sizeof out_of_range);
  TinyInputs negative = in;
  negative.ids[0] = -1;
  write_st("in_id_negative.safetensors", "{" X_IN "," IDS_IN "}", &negative, sizeof negative);

  struct { float x[8]; float ids[2]; } fl = {{0}, {1.0f, 3.5f}};
  write_st("in_ids_fractional.safetensors",
           "{" X_IN ",\"ids\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[32,40]}}", &fl,
           sizeof fl);
  struct { float x[8]; double ids[2]; } nan_ids = {{0}, {NAN, 1}};
  write_st("in_ids_nan.safetensors",
           "{" X_IN ",\"ids\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[32,48]}}",
           &nan_ids, sizeof nan_ids);
  struct { double x[8]; int64_t ids[2]; } big = {{1e300}, {1, 2}};
  write_st("in_x_too_large_for_f32.safetensors",
           "{\"x\":{\"dtype\":\"F64\",\"shape\":[2,4],\"data_offsets\":[0,64]},"
           "\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[64,80]}}",
           &big, sizeof big);
  write_st("in_missing_x.safetensors",
           "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", in.ids,
           sizeof in.ids);
  write_st("in_x_transposed.safetensors",
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[0,32]}," IDS_IN "}", &in,
           sizeof in);
  write_st("in_x_rank.safetensors",
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}," IDS_IN "}", &in,
           sizeof in);
  write_st("in_past_end.safetensors", "{" X_IN "," IDS_IN "}", &in, 40);
  write_st("in_overlap.safetensors",
           "{" X_IN ",\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[24,40]}}", &in,
           sizeof in);
  write_st("in_offsets_size.safetensors",
           "{" X_IN ",\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[32,44]}}", &in,
           sizeof in);
  write_st("in_bad_dtype.safetensors",
           "{\"x\":{\"dtype\":\"F33\",\"shape\":[2,4],\"data_offsets\":[0,32]}," IDS_IN "}", &in,
           sizeof in);
  write_st("in_negative_shape.safetensors",
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[-2,4],\"data_offsets\":[0,32]}," IDS_IN "}",
           &in, sizeof in);
  write_st("in_duplicate.safetensors", "{" X_IN "," X_IN "," IDS_IN "}", &in, sizeof in);
  write_st("in_not_object.safetensors", "[1, 2]", &in, sizeof in);
  write_st("in_stray_bytes.safetensors", "{" X_IN "," IDS_IN "} xx", &in, sizeof in);
  // Tensor names: "x\u0000junk" read as "x" by cJSON; "x\xff" is not UTF-8.
  write_st("in_name_nul.safetensors",
           "{\"x\\u0000junk\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,32]}," IDS_IN "}",
           &in, sizeof in);
  write_st("in_name_utf8.safetensors",
           "{\"x\xff\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,32]}," IDS_IN "}",
           &in, sizeof in);
  write_st("in_entry_key.safetensors",
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,4],\"offsets\":[0,32]}," IDS_IN "}", &in,
           sizeof in);

  float nan_x[2] = {NAN, 1};
  write_st("in_nan.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
           nan_x, sizeof nan_x);
  int32_t big_a[2] = {INT32_MAX, 3};
  write_st("in_i32_big.safetensors",
           "{\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", big_a, sizeof big_a);
  write_st("empty_weights.safetensors", "{}", NULL, 0);
  // kl_div_target.json: lp, t f32[2,2]; t[2] is -0.5, then NaN.
  float kl[8] = {-1, -1, -1, -1, 0.5f, 0.5f, -0.5f, 0.5f};
#define KL_IN "{\"lp\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}," \
              "\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]}}"
  write_st("in_kl_negative.safetensors", KL_IN, kl, sizeof kl);
  kl[6] = NAN;
  write_st("in_kl_nan.safetensors", KL_IN, kl, sizeof kl);
}

// Model files too large to keep in tests/bad/. config_chain.json: 50000 config entries, each
// defined as the next (fuzzing the frontend, tests/fuzz/fuzz_model: evaluating c0 recursed
// 50000 deep and overflowed the stack, after 36 s of linear config lookups at -O2);
// config_chain_5000.json: 5000, a chain deeper than the 4096 evaluation allows whatever
// --max-config says.
static void write_config_chain(const char *name, int N) {
  char *buf = malloc((size_t)N * 32 + 256);
  ck_assert_ptr_nonnull(buf);
  size_t n = (size_t)sprintf(buf, "{\"format\": \"kiln-model/1\", \"config\": {");
  for (int i = 0; i < N - 1; i++) n += (size_t)sprintf(buf + n, "\"c%d\": \"c%d\", ", i, i + 1);
  n += (size_t)sprintf(buf + n, "\"c%d\": 1},\n \"inputs\": [{\"name\": \"x\", \"dtype\": \"f32\", "
                       "\"shape\": [\"c0\"]}], \"outputs\": [\"x\"]}\n", N - 1);
  write_file(name, buf, n);
  free(buf);
}

static void write_model_files(void) {
  write_config_chain("config_chain.json", 50000);
  write_config_chain("config_chain_5000.json", 5000);
}

// tiny_ok.json's weights come from `kiln init`; the corrupt copies start from them.
// Layout: w f32[4,3] at [0, 48), table f32[5,3] at [48, 108).
static void write_weight_files(void) {
  const char *init[] = {"init", "bad/tiny_ok.json", "-o", "tmp/w.safetensors", NULL};
  Run r;
  run_kiln(init, NULL, &r);
  ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "kiln init failed: %s", r.err);
  size_t n;
  unsigned char *w = read_file("w.safetensors", &n);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | w[i];
  ck_assert_uint_eq(n, 8 + hlen + 108);
  const unsigned char *data = w + 8 + hlen;

  write_file("w_truncated.safetensors", w, 5);
  write_file("w_empty.safetensors", w, 0);
  write_file("w_data_cut.safetensors", w, n - 10);
  unsigned char *c = malloc(n);
  ck_assert_ptr_nonnull(c);
  memcpy(c, w, n);
  c[0] = (unsigned char)(n + 100), c[1] = (unsigned char)((n + 100) >> 8);
  write_file("w_hlen_past_end.safetensors", c, n);
  memcpy(c, w, n);
  c[7] = 0x40;  // 2^62
  write_file("w_hlen_huge.safetensors", c, n);
  memcpy(c, w, n);
  memset(c, 0, 8);
  write_file("w_hlen_zero.safetensors", c, n);
  memcpy(c, w, n);
  c[8 + 1] = '#';  // {"w": -> {#w":
  write_file("w_bad_json.safetensors", c, n);
  free(c);

  write_st("w_missing_table.safetensors",
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]}}", data, 48);
  write_st("w_misshaped.safetensors",
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
           "\"table\":{\"dtype\":\"F32\",\"shape\":[5,3],\"data_offsets\":[48,108]}}",
           data, 108);
  double big[12] = {0, 0, 1e300};
  unsigned char f64[96 + 60];
  memcpy(f64, big, 96);
  memcpy(f64 + 96, data + 48, 60);
  write_st("w_f64_too_large.safetensors",
           "{\"w\":{\"dtype\":\"F64\",\"shape\":[4,3],\"data_offsets\":[0,96]},"
           "\"table\":{\"dtype\":\"F32\",\"shape\":[5,3],\"data_offsets\":[96,156]}}",
           f64, sizeof f64);
  free(w);
}

// --- the catalogue --------------------------------------------------------------------

typedef struct Case {
  const char *args[MAX_ARGS];
  int code;                        // the exit status kiln must give
  const char *expect[MAX_EXPECT];  // substrings its stderr must contain
} Case;

#define RUN_TINY(in) "run", "bad/tiny_ok.json", "--weights", "tmp/w.safetensors", "--inputs", \
                     "tmp/" in, "-o", "tmp/out.safetensors"
#define RUN_TINY_W(w) "run", "bad/tiny_ok.json", "--weights", "tmp/" w, "--inputs", \
                      "tmp/in_ok.safetensors", "-o", "tmp/out.safetensors"
#define RUN_TINY_O(out) "run", "bad/tiny_ok.json", "--weights", "tmp/w.safetensors", "--inputs", \
                        "tmp/in_ok.safetensors", "-o", out
#define VQA "models/visualbert-vqa.json"

static const Case cases[] = {
  // --- model files: JSON and the file format -----------------------------------------
  {{"check", "bad/malformed.json"}, 1, {"malformed.json:5:3", "malformed JSON"}},
  {{"check", "bad/not_object.json"}, 1, {"not_object.json", "must be a JSON object"}},
  {{"check", "bad/unknown_key.json"}, 1, {"unknown_key.json", "unknown key \"node\""}},
  {{"check", "bad/bad_format.json"}, 1, {"bad_format.json", "format", "kiln-model/1"}},
  {{"check", "bad/empty_model.json"}, 1, {"empty_model.json", "declares no tensors"}},
  {{"check", "bad/duplicate_key.json"}, 1, {"duplicate_key.json", "nodes[0]", "\"op\" appears twice"}},
  {{"check", "bad/duplicate_config.json"}, 1, {"duplicate_config.json", "config", "\"hidden\" appears twice"}},
  {{"check", "bad/inputs_not_array.json"}, 1, {"inputs_not_array.json", "inputs", "must be an array"}},
  {{"check", "bad/losses_array.json"}, 1, {"losses_array.json", "losses", "must be an object"}},
  {{"check", "bad/node_not_object.json"}, 1, {"node_not_object.json", "nodes[1]", "must be an object"}},
  {{"check", "bad/node_missing_op.json"}, 1, {"node_missing_op.json", "nodes[0]", "needs \"op\""}},
  {{"check", "bad/node_unknown_key.json"}, 1, {"node_unknown_key.json", "nodes[0]", "unknown key \"axis\""}},
  {{"check", "bad/fused_in_model.json"}, 1, {"fused_in_model.json", "nodes[0] \"y\": fused", "made by the fuse pass"}},
  {{"check", "bad/input_missing_shape.json"}, 1, {"input_missing_shape.json", "inputs[0]", "\"x\"", "missing \"shape\""}},
  {{"check", "bad/name_nul.json"}, 1, {"name_nul.json:3:37", "NUL character", "in a string"}},
  {{"check", "bad/empty_name.json"}, 1, {"empty_name.json", "inputs[0]", "\"name\" must be a non-empty string"}},
  {{"check", "bad/number_too_large.json"}, 1, {"number_too_large.json", "nodes[0]", "scale", "too large"}},
  // --- ops, arity, attributes ------------------------------------------------------------
  {{"check", "bad/unknown_op.json"}, 1, {"unknown_op.json", "nodes[1]", "unknown op \"matmull\""}},
  {{"check", "bad/wrong_arity.json"}, 1, {"wrong_arity.json", "nodes[1]", "\"sum\"", "add takes 2 inputs, got 1"}},
  {{"check", "bad/bad_attr.json"}, 1, {"bad_attr.json", "nodes[0]", "no attribute \"transpose_c\""}},
  {{"check", "bad/bad_attr_type.json"}, 1, {"bad_attr_type.json", "nodes[0]", "transpose_b", "true or false"}},
  {{"check", "bad/missing_required_attr.json"}, 1, {"missing_required_attr.json", "nodes[0]", "\"flat\"", "needs attribute \"shape\""}},
  {{"check", "bad/dropout_p.json"}, 1, {"dropout_p.json", "nodes[0]", "dropout", "p is 1.5"}},
  // --- names and graph structure ------------------------------------------------------
  {{"check", "bad/undefined_input.json"}, 1, {"undefined_input.json", "nodes[0]", "\"bias\" is not defined"}},
  {{"check", "bad/undefined_output.json"}, 1, {"undefined_output.json", "outputs[1]", "\"logits\" is not defined"}},
  {{"check", "bad/output_twice.json"}, 1, {"output_twice.json", "outputs[1]", "listed twice"}},
  {{"check", "bad/dup_name.json"}, 1, {"dup_name.json", "nodes[1]", "\"h\"", "already defined", "nodes[0]"}},
  {{"check", "bad/cycle.json"}, 1, {"cycle.json", "cycle", "\"a\"", "\"b\"", "\"c\""}},
  {{"check", "bad/loss_not_scalar.json"}, 1, {"loss_not_scalar.json", "\"total\"", "\"per_row\"", "f32 scalar"}},
  {{"check", "bad/loss_undefined.json"}, 1, {"loss_undefined.json", "losses.total", "\"sum\" is not defined"}},
  // --- shapes and dtypes ---------------------------------------------------------------
  {{"check", "bad/matmul_inner_dim.json"}, 1, {"matmul_inner_dim.json", "nodes[1]", "\"scores\"", "inner dims differ (4 vs 3)"}},
  {{"check", "bad/attention_heads.json"}, 1, {"attention_heads.json", "nodes[0]", "\"ctx\"", "attention", "heads is 5", "divide the hidden size 12"}},
  {{"check", "bad/attention_mask_shape.json"}, 1, {"attention_mask_shape.json", "nodes[0]", "\"ctx\"", "mask [2,1,1,4] does not broadcast", "[2,3,5,5]"}},
  {{"check", "bad/broadcast_mismatch.json"}, 1, {"broadcast_mismatch.json", "nodes[0]", "[2,3] and [2,4] do not broadcast"}},
  {{"check", "bad/reshape_numel.json"}, 1, {"reshape_numel.json", "nodes[0]", "\"flat\"", "24 elements", "25 elements"}},
  {{"check", "bad/reshape_overflow.json"}, 1, {"reshape_overflow.json", "nodes[0]", "too many elements"}},
  {{"check", "bad/slice_range.json"}, 1, {"slice_range.json", "nodes[0]", "\"cls\"", "[4, 12)", "size 8"}},
  {{"check", "bad/permute_bad.json"}, 1, {"permute_bad.json", "nodes[0]", "not a permutation"}},
  {{"check", "bad/concat_mismatch.json"}, 1, {"concat_mismatch.json", "nodes[0]", "\"image\"", "[2,7,6]"}},
  {{"check", "bad/axis_out_of_range.json"}, 1, {"axis_out_of_range.json", "nodes[0]", "axis 2 out of range"}},
  {{"check", "bad/layernorm_weight_shape.json"}, 1, {"layernorm_weight_shape.json", "nodes[0]", "\"ln.weight\"", "[4]", "[8]"}},
  {{"check", "bad/cross_entropy_shape.json"}, 1, {"cross_entropy_shape.json", "nodes[0]", "\"ce\"", "[4,10]", "[5]"}},
  {{"check", "bad/gather_float_indices.json"}, 1, {"gather_float_indices.json", "nodes[0]", "\"ids\"", "must be i32 or i64"}},
  {{"check", "bad/dtype_mismatch.json"}, 1, {"dtype_mismatch.json", "nodes[0]", "dtypes differ"}},
  {{"check", "bad/int_into_float_op.json"}, 1, {"int_into_float_op.json", "nodes[0]", "\"ids\" is i64", "takes floats"}},
  {{"check", "bad/bad_dtype.json"}, 1, {"bad_dtype.json", "inputs[0]", "\"x\"", "dtype must be"}},
  {{"check", "bad/negative_dim.json"}, 1, {"negative_dim.json", "params[0]", "shape[1]", "dims must be positive"}},
  {{"check", "bad/zero_dim.json"}, 1, {"zero_dim.json", "inputs[0]", "shape[0]", "\"batch\" is 0"}},
  {{"check", "bad/rank_too_big.json"}, 1, {"rank_too_big.json", "inputs[0]", "rank 9 exceeds 8"}},
  {{"check", "bad/full_int_range.json"}, 1, {"full_int_range.json", "nodes[0]", "\"big\"", "full", "3e+09", "i32 can hold"}},
  {{"check", "bad/numel_overflow.json"}, 1, {"numel_overflow.json", "params[0]", "\"w\"", "more than 2^48 elements"}},
  // --- config arithmetic and templates ------------------------------------------------
  {{"check", "bad/div_zero_shape.json"}, 1, {"div_zero_shape.json", "inputs[0]", "shape[1]", "division by zero"}},
  {{"check", "bad/div_zero_config.json"}, 1, {"div_zero_config.json", "config.head_dim", "division by zero"}},
  {{"check", "bad/shape_not_whole.json"}, 1, {"shape_not_whole.json", "inputs[0]", "shape[1]", "2.5, not a whole number"}},
  {{"check", "bad/unknown_config_name.json"}, 1, {"unknown_config_name.json", "inputs[0]", "unknown name \"batch_size\""}},
  {{"check", "bad/config_self_ref.json"}, 1, {"config_self_ref.json", "config.a", "defined in terms of itself"}},
  {{"check", "bad/config_syntax.json"}, 1, {"config_syntax.json", "config.ffn", "unexpected end"}},
  {{"check", "tmp/config_chain.json"}, 1, {"config_chain.json", "config.c4096", "more than 4096 config entries", "--max-config N"}},
  {{"check", "tmp/config_chain_5000.json", "--max-config", "6000"}, 1, {"config_chain_5000.json", "config.c", "a chain of more than 4096 entries"}},
  {{"check", VQA, "--max-config", "5"}, 1, {"visualbert-common.json", "more than 5 config entries", "--max-config N"}},
  {{"check", "bad/tiny_ok.json", "--max-config", "0"}, 2, {"--max-config must be an integer"}},
  {{RUN_TINY("in_ok.safetensors"), "--max-memory", "100"}, 1, {"the program needs", "more than the limit of 100 bytes (--max-memory)", "raise it with --max-memory SIZE"}},
  {{"train", "bad/cast_nan.json", "--weights", "tmp/w.safetensors", "--data", "tmp/in_ok.safetensors",
    "-o", "tmp/out.safetensors", "--max-memory", "1.5G"}, 2, {"--max-memory must be a size", "\"1.5G\""}},
  {{RUN_TINY("in_ok.safetensors"), "--max-memory", "0"}, 2, {"--max-memory must be a size"}},
  {{RUN_TINY("in_ok.safetensors"), "--output-attentions"}, 1, {"tiny_ok.json", "no output group \"attentions\" (it declares none)"}},
  {{"run", "bad/output_group_undefined.json", "--weights", "tmp/w.safetensors", "--inputs", "tmp/in_ok.safetensors",
    "-o", "tmp/out.safetensors", "--output-attentions"}, 1,
   {"output_group_undefined.json: output_groups[1]: outputs.att.{k}: \"nope.0\" is not defined"}},
  {{"grad", "bad/tiny_ok.json", "--output-attentions"}, 2, {"--output-attentions"}},
  {{"dump", "bad/tiny_ok.json", "--disable-pass", "autodiff"}, 2, {"--disable-pass \"autodiff\": this pass cannot be disabled"}},
  {{RUN_TINY("in_ok.safetensors"), "--backend", "ref", "--max-memory", "100"}, 1,
   {"the reference evaluator (a double for every element of every value) needs", "more than the limit of 100 bytes (--max-memory)"}},
  {{"check", "bad/config_bad_type.json"}, 1, {"config_bad_type.json", "config.batch", "not an array"}},
  {{"check", "bad/sqrt_negative.json"}, 1, {"sqrt_negative.json", "config.scale", "sqrt of a negative"}},
  {{"check", "bad/template_unclosed.json"}, 1, {"template_unclosed.json", "nodes[0]", "'{' without '}'"}},
  {{"check", "bad/template_not_whole.json"}, 1, {"template_not_whole.json", "nodes[0]", "1.5, not a whole number"}},
  // --- parameters and initialisers ----------------------------------------------------
  {{"check", "bad/bad_init.json"}, 1, {"bad_init.json", "params[0]", "\"uniform(0.1)\""}},
  {{"check", "bad/bad_init_std.json"}, 1, {"bad_init_std.json", "params[0]", "std -0.02"}},
  {{"check", "bad/copy_init_shape_mismatch.json"}, 1, {"copy_init_shape_mismatch.json", "params[1]", "\"decoder\"", "\"embed\"", "[10,4]"}},
  {{"check", "bad/copy_init_not_param.json"}, 1, {"copy_init_not_param.json", "params[0]", "\"x\", which is not a parameter"}},
  {{"init", "bad/huge_param.json", "-o", "tmp/out.safetensors"}, 1, {"huge_param.json", "params[0]", "\"w\"", "out of memory"}},
  // --- includes and blocks -------------------------------------------------------------
  {{"check", "bad/include_cycle_a.json"}, 1, {"include_cycle_a.json", "include_cycle_b.json", "includes itself"}},
  {{"check", "bad/include_missing.json"}, 1, {"include_missing.json", "include[1]", "no_such_common.json", "cannot open"}},
  {{"check", "bad/include_empty_name.json"}, 1, {"include_empty_name.json", "include", "file name is empty"}},
  {{"check", "bad/block_missing_arg.json"}, 1, {"block_missing_arg.json", "nodes[0]", "needs argument \"dst\""}},
  {{"check", "bad/block_unknown.json"}, 1, {"block_unknown.json", "nodes[0]", "unknown block \"dubble\""}},
  {{"check", "bad/block_unknown_arg.json"}, 1, {"block_unknown_arg.json", "nodes[0]", "no argument \"scale\""}},
  {{"check", "bad/block_recursive.json"}, 1, {"block_recursive.json", "blocks.forever", "nested deeper"}},
  {{"check", "bad/block_error_inside.json"}, 1, {"block_error_inside.json", "blocks.layer.nodes[1]", "i=0", "\"h.-1\" is not defined"}},
  {{"check", "bad/repeat_negative.json"}, 1, {"repeat_negative.json", "nodes[0]", "repeat", "-2"}},
  {{"check", "bad/repeat_nested.json"}, 1, {"repeat_nested.json", "blocks.many.nodes[0]", "more than 100000 instances"}},
  {{"check", "bad/repeat_nodes.json"}, 1, {"repeat_nodes.json", "nodes[0]", "more than 100000 instances or nodes"}},
  // --- weights files ---------------------------------------------------------------------
  {{RUN_TINY_W("w_truncated.safetensors")}, 1, {"w_truncated.safetensors", "5 bytes", "too short"}},
  {{RUN_TINY_W("w_empty.safetensors")}, 1, {"w_empty.safetensors", "0 bytes", "too short"}},
  {{RUN_TINY_W("w_hlen_past_end.safetensors")}, 1, {"w_hlen_past_end.safetensors", "header length", "past the end of the file"}},
  {{RUN_TINY_W("w_hlen_huge.safetensors")}, 1, {"w_hlen_huge.safetensors", "header length 46116860184273880", "100 MB limit"}},
  {{RUN_TINY_W("w_hlen_zero.safetensors")}, 1, {"w_hlen_zero.safetensors", "header length is 0"}},
  {{RUN_TINY_W("w_bad_json.safetensors")}, 1, {"w_bad_json.safetensors", "not valid JSON"}},
  {{RUN_TINY_W("w_data_cut.safetensors")}, 1, {"w_data_cut.safetensors", "\"table\"", "past the end of the data"}},
  {{RUN_TINY_W("w_missing_table.safetensors")}, 1, {"w_missing_table.safetensors", "parameter \"table\" is missing", "tiny_ok.json: params[1]"}},
  {{RUN_TINY_W("w_misshaped.safetensors")}, 1, {"w_misshaped.safetensors", "\"w\"", "[3,4]", "[4,3]"}},
  {{RUN_TINY_W("w_f64_too_large.safetensors")}, 1, {"w_f64_too_large.safetensors", "\"w\"", "1e+300", "too large for f32"}},
  {{RUN_TINY_W("no_such.safetensors")}, 1, {"no_such.safetensors", "cannot open"}},
  {{RUN_TINY_W("")}, 1, {"not a regular file"}},  // the temporary directory itself
  // --- inputs files ------------------------------------------------------------------------
  {{RUN_TINY("in_ids_fractional.safetensors")}, 1, {"in_ids_fractional.safetensors", "\"ids\"", "3.5", "not a whole number", "i64"}},
  {{RUN_TINY("in_ids_nan.safetensors")}, 1, {"in_ids_nan.safetensors", "\"ids\"", "nan", "not finite"}},
  {{RUN_TINY("in_x_too_large_for_f32.safetensors")}, 1, {"in_x_too_large_for_f32.safetensors", "\"x\"", "too large for f32"}},
  {{RUN_TINY("in_id_out_of_range.safetensors")}, 1, {"tiny_ok.json: nodes[1]", "\"e\"", "gather", "index 7 out of range [0, 5)"}},
  {{RUN_TINY("in_id_negative.safetensors")}, 1, {"tiny_ok.json: nodes[1]", "\"e\"", "index -1 out of range"}},
  {{RUN_TINY("in_missing_x.safetensors")}, 1, {"in_missing_x.safetensors", "no output can be computed", "\"x\""}},
  {{RUN_TINY("in_x_transposed.safetensors")}, 1, {"in_x_transposed.safetensors", "\"x\"", "[4,2]", "[2,4]"}},
  {{RUN_TINY("in_x_rank.safetensors")}, 1, {"in_x_rank.safetensors", "\"x\"", "[8]", "[2,4]"}},
  {{RUN_TINY("in_past_end.safetensors")}, 1, {"in_past_end.safetensors", "\"ids\"", "past the end of the data"}},
  {{RUN_TINY("in_overlap.safetensors")}, 1, {"in_overlap.safetensors", "\"x\"", "\"ids\"", "overlap"}},
  {{RUN_TINY("in_offsets_size.safetensors")}, 1, {"in_offsets_size.safetensors", "\"ids\"", "hold 12 bytes", "needs 16"}},
  {{RUN_TINY("in_bad_dtype.safetensors")}, 1, {"in_bad_dtype.safetensors", "\"x\"", "unknown dtype \"F33\""}},
  {{RUN_TINY("in_negative_shape.safetensors")}, 1, {"in_negative_shape.safetensors", "\"x\"", "shape[0] is -2"}},
  {{RUN_TINY("in_duplicate.safetensors")}, 1, {"in_duplicate.safetensors", "duplicate tensor name \"x\""}},
  {{RUN_TINY("in_not_object.safetensors")}, 1, {"in_not_object.safetensors", "header is an array"}},
  {{RUN_TINY("in_stray_bytes.safetensors")}, 1, {"in_stray_bytes.safetensors", "stray bytes"}},
  {{RUN_TINY("in_name_nul.safetensors")}, 1, {"in_name_nul.safetensors", "header byte 3", "NUL character", "tensor names"}},
  {{RUN_TINY("in_name_utf8.safetensors")}, 1, {"in_name_utf8.safetensors", "tensor name \"x...\" is not valid UTF-8", "0xff"}},
  {{"init", "tmp/name_utf8.json", "-o", "tmp/out.safetensors"}, 1, {"out.safetensors", "tensor name \"w...\" is not valid UTF-8"}},
  {{RUN_TINY("in_entry_key.safetensors")}, 1, {"in_entry_key.safetensors", "\"x\"", "unknown key \"offsets\""}},
  {{"run", "bad/cast_nan.json", "--weights", "tmp/empty_weights.safetensors", "--inputs",
    "tmp/in_nan.safetensors", "-o", "tmp/out.safetensors"},
   1, {"cast_nan.json: nodes[0]", "\"xi\"", "cast", "nan", "i32 cannot hold"}},
  {{"run", "bad/i32_overflow.json", "--weights", "tmp/empty_weights.safetensors", "--inputs",
    "tmp/in_i32_big.safetensors", "-o", "tmp/out.safetensors"},
   1, {"i32_overflow.json: nodes[0]", "\"square\"", "mul", "i32 cannot hold"}},
  {{"run", "bad/i32_overflow.json", "--backend", "ref", "--weights", "tmp/empty_weights.safetensors",
    "--inputs", "tmp/in_i32_big.safetensors", "-o", "tmp/out.safetensors"},
   1, {"i32_overflow.json: nodes[0] \"square\": mul: element 0 overflows: i32 cannot hold the result"}},
  {{"run", "bad/reduce_sum_overflow.json", "--weights", "tmp/empty_weights.safetensors", "--inputs",
    "tmp/in_i32_big.safetensors", "-o", "tmp/out.safetensors"},
   1, {"reduce_sum_overflow.json: nodes[0] \"total\": reduce_sum: element 0 overflows: i32 cannot hold the result"}},
  {{"run", "bad/reduce_sum_overflow.json", "--backend", "ref", "--weights", "tmp/empty_weights.safetensors",
    "--inputs", "tmp/in_i32_big.safetensors", "-o", "tmp/out.safetensors"},
   1, {"reduce_sum_overflow.json: nodes[0] \"total\": reduce_sum: element 0 overflows: i32 cannot hold the result"}},
#define KL_RUN(in) "run", "bad/kl_div_target.json", "--weights", "tmp/empty_weights.safetensors", \
                   "--inputs", "tmp/" in, "-o", "tmp/out.safetensors"
#define KL_SAYS(v) "kl_div_target.json: nodes[0] \"kl\": kl_div: target element 2 is " v \
                   "; a target must be a probability, >= 0"
  {{KL_RUN("in_kl_negative.safetensors")}, 1, {KL_SAYS("-0.5")}},
  {{KL_RUN("in_kl_negative.safetensors"), "--backend", "ref"}, 1, {KL_SAYS("-0.5")}},
  {{KL_RUN("in_kl_nan.safetensors")}, 1, {KL_SAYS("nan")}},
  {{KL_RUN("in_kl_nan.safetensors"), "--backend", "ref"}, 1, {KL_SAYS("nan")}},
  {{"run", "bad/tiny_ok.json", "--weights", "tmp/w.safetensors", "--inputs",
    "tmp/in_ok.safetensors", "-o", "tmp/no_such_dir/out.safetensors"},
   1, {"no_such_dir/out.safetensors", "cannot create"}},
  {{"train", "bad/tiny_ok.json", "--weights", "tmp/w.safetensors", "--data", "tmp/in_ok.safetensors",
    "-o", "tmp/no_such_dir/w.safetensors"},  // found before the model is loaded (it has no loss)
   1, {"no_such_dir/w.safetensors", "cannot create", "No such file"}},
  // --- outputs: never the same file as an input, never anything but a regular file ------------
  {{RUN_TINY_O("tmp/w.safetensors")}, 2, {"-o", "w.safetensors is the same file as --weights"}},
  {{RUN_TINY_O("tmp/./in_ok.safetensors")}, 2, {"./in_ok.safetensors is the same file as --inputs", "/in_ok.safetensors: writing the output would replace the input"}},
  {{RUN_TINY_O("tmp/w_link.safetensors")}, 2, {"w_link.safetensors is the same file as --weights", "/w.safetensors: writing"}},  // a hard link
  {{"init", "tmp/tiny.json", "-o", "tmp/tiny.json"}, 2, {"tiny.json is the same file as MODEL"}},
  {{"check", "bad/tiny_ok.json", "--max-nodes", "0"}, 2, {"--max-nodes must be an integer"}},
  {{"check", "bad/repeat_nodes.json", "--max-nodes", "50"}, 1, {"repeat_nodes.json", "more than 50 instances or nodes", "--max-nodes N"}},
  {{"train", "bad/tiny_ok.json", "--weights", "tmp/w.safetensors", "--data", "tmp/in_ok.safetensors",
    "-o", "tmp/in_ok.safetensors"}, 2, {"same file as --data"}},
  {{"train", "bad/tiny_ok.json", "--resume", "tmp/w.safetensors", "--data", "tmp/in_ok.safetensors",
    "-o", "tmp/w_link.safetensors"}, 2, {"same file as --resume"}},
  {{"train", "bad/tiny_ok.json", "--init", "tmp/w.safetensors", "--data", "tmp/in_ok.safetensors",
    "-o", "tmp/w.safetensors"}, 2, {"same file as --init"}},
  {{"train", "bad/tiny_ok.json", "--weights", "tmp/w.safetensors", "--data", "tmp/in_ok.safetensors",
    "--eval-data", "tmp/in_x_rank.safetensors", "-o", "tmp/in_x_rank.safetensors"}, 2, {"same file as --eval-data"}},
  {{RUN_TINY_O("tmp/fifo")}, 1, {"fifo: is a FIFO", "regular file"}},
  {{RUN_TINY_O("tmp/")}, 1, {"is a directory", "regular file"}},
  {{RUN_TINY_O("tmp/out_link.safetensors")}, 1, {"out_link.safetensors: is a symbolic link"}},
  // --- config overrides and model paths on the command line ---------------------------------
  {{"check", VQA, "--set", "nosuch=1"}, 1, {"--set nosuch", "no config entry \"nosuch\""}},
  {{"check", VQA, "--set", "batch=0"}, 1, {"visualbert-inputs.json", "inputs[0]", "\"batch\" is 0", "dims must be positive"}},
  {{"check", VQA, "--set", "heads=5"}, 1, {"visualbert-common.json", "head_dim", "153.6, not a whole number"}},
  {{"check", VQA, "--set", "batch=2+"}, 1, {"--set batch", "unexpected end"}},
  {{"check", VQA, "--set", "hidden=0"}, 1, {"config.attn_scale", "division by zero"}},
  {{"check", VQA, "--set", "batch=1e300"}, 1, {"inputs[0]", "\"batch\"", "too large"}},
  {{"check", "bad/no_such_model.json"}, 1, {"no_such_model.json", "cannot open"}},
  {{"check", "tmp/"}, 1, {"not a regular file (a directory)"}},
  // --- FIFOs without a writer: refused at once, never waited on ----------------------------
  {{"check", "tmp/fifo"}, 1, {"fifo", "not a regular file (a FIFO)"}},
  {{"check", "tmp/include_fifo.json"}, 1, {"include_fifo.json: include", "fifo", "not a regular file (a FIFO)"}},
  {{RUN_TINY_W("fifo")}, 1, {"fifo", "not a regular file (a FIFO)"}},
  {{RUN_TINY("fifo")}, 1, {"fifo", "not a regular file (a FIFO)"}},
  {{"eval", "bad/tiny_ok.json", "--weights", "tmp/w.safetensors", "--data", "tmp/fifo"}, 1, {"fifo", "not a regular file (a FIFO)"}},
  {{"tokenize", "--vocab", "tmp/fifo", "red"}, 1, {"fifo", "not a regular file (a FIFO)"}},
  // --- bad command lines ---------------------------------------------------------------------
  {{NULL}, 2, {"usage"}},
  {{"frob"}, 2, {"unknown command \"frob\""}},
  {{"check", "--frob", VQA}, 2, {"unknown option \"--frob\""}},
  {{"check", VQA, "--set"}, 2, {"--set needs a value"}},
  {{"check", VQA, "--set", "foo"}, 2, {"--set \"foo\"", "NAME=VALUE"}},
  {{"check", VQA, "--set", "=1"}, 2, {"--set \"=1\"", "NAME=VALUE"}},
  {{"check"}, 2, {"needs a MODEL"}},
  {{"check", VQA, "extra.json"}, 2, {"unexpected argument \"extra.json\""}},
  {{"check", VQA, "--seed", "1"}, 2, {"\"--seed\" does not apply"}},
  {{"run", VQA, "--threads", "0", "--weights", "w", "--inputs", "i", "-o", "o"}, 2, {"--threads", "\"0\""}},
  {{"run", VQA, "--threads", "many", "--weights", "w", "--inputs", "i", "-o", "o"}, 2, {"--threads", "\"many\""}},
  {{"run", VQA, "--inputs", "i", "-o", "o"}, 2, {"--weights"}},
  {{"run", VQA, "--weights", "w", "-o", "o"}, 2, {"--inputs"}},
  {{"run", VQA, "--weights", "w", "--inputs", "i"}, 2, {"-o FILE"}},
  {{"run", VQA, "--backend", "nosuch", "--weights", "w", "--inputs", "i", "-o", "o"}, 2, {"--backend", "\"nosuch\""}},
  {{"init", VQA}, 2, {"-o FILE"}},
  {{"init", VQA, "-o", "tmp/out.safetensors", "--seed", "-1"}, 2, {"--seed", "\"-1\""}},
  {{"dump", VQA, "--format", "svg"}, 2, {"--format", "\"svg\""}},
  {{"dump", VQA, "--after", "nosuch"}, 2, {"--after \"nosuch\"", "no such pass"}},
  {{"dump", VQA, "--disable-pass", "nosuch"}, 2, {"--disable-pass \"nosuch\"", "no such pass"}},
  // --- tokenize, data synth, eval, run --text ---------------------------------------------------
  {{"tokenize", "--vocab", "tmp/no_such_vocab.txt", "red"}, 1, {"no_such_vocab.txt", "cannot open"}},
  {{"tokenize", "--vocab", "bad/vocab_no_unk.txt", "red"}, 1, {"vocab_no_unk.txt", "no [UNK] token"}},
  {{"tokenize", "red"}, 2, {"--vocab"}},
  {{"tokenize", "--vocab", "bad/vocab_no_unk.txt"}, 2, {"needs the TEXT"}},
  {{"data"}, 2, {"subcommand"}},
  {{"data", "synth"}, 2, {"-o DIR"}},
  {{"data", "shuffle", "-o", "tmp/x"}, 2, {"unknown data subcommand \"shuffle\""}},
  {{"data", "synth", "-o", "tmp/x", "--train", "-3"}, 2, {"number of examples", "\"-3\""}},
  {{"data", "synth", "-o", "tmp/x", "--set", "regions=many"}, 2, {"regions=many", "positive integer"}},
  {{"train", "bad/tiny_ok.json", "--weights", "tmp/w.safetensors", "--data", "tmp/in_ok.safetensors",
    "-o", "tmp/out.safetensors", "--eval-every", "5"}, 2, {"--eval-every needs --eval-data"}},
  {{"eval", VQA, "--weights", "w"}, 2, {"--data"}},
  {{"eval", VQA, "--data", "d", "--inputs", "i"}, 2, {"\"--inputs\" does not apply"}},
  {{RUN_TINY("in_ok.safetensors"), "--text", "red"}, 2, {"--text needs --vocab"}},
  {{RUN_TINY("in_ok.safetensors"), "--text", "red", "--vocab", "bad/vocab_no_unk.txt"}, 1,
   {"tiny_ok.json", "--text", "no input \"input_ids\""}},
  {{"tokenize", "--help"}, 0, {NULL}},
  {{"data", "--help"}, 0, {NULL}},
  {{"eval", "--help"}, 0, {NULL}},
  // --- every help form -------------------------------------------------------------------------
  {{"--help"}, 0, {NULL}},
  {{"-h"}, 0, {NULL}},
  {{"help"}, 0, {NULL}},
  {{"check", "--help"}, 0, {NULL}},
  {{"check", "-h"}, 0, {NULL}},
  {{"dump", "--help"}, 0, {NULL}},
  {{"init", "--help"}, 0, {NULL}},
  {{"run", "--help"}, 0, {NULL}},
  {{"run", VQA, "--help"}, 0, {NULL}},
  {{"ops", "--help"}, 0, {NULL}},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

// Settings in the environment, read by kiln's entry point: a bad one is a bad command line
// (exit 2), refused as its flag is, before anything runs.
typedef struct EnvCase {
  const char *env;  // NAME=VALUE added to kiln's environment
  Case c;
} EnvCase;

static const EnvCase env_cases[] = {
  {"KILN_CPU=nosuchcpu", {{RUN_TINY("in_ok.safetensors")}, 2, {"KILN_CPU=nosuchcpu", "LLVM does not know this CPU"}}},
  {"KILN_CPU=nosuchcpu", {{"check", "bad/tiny_ok.json"}, 2, {"KILN_CPU=nosuchcpu", "usage:"}}},
};
#define N_ENV_CASES (int)(sizeof env_cases / sizeof env_cases[0])

static void describe(const Case *c, const char *env, char *buf, size_t cap) {
  size_t len = (size_t)snprintf(buf, cap, "%s%skiln", env ? env : "", env ? " " : "");
  for (int i = 0; c->args[i] && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, " %s", c->args[i]);
}

// Whether stderr holds a report of ASan, LSan or UBSan. The one message allowed is ASan's
// warning that an allocation too large for memory returned NULL (huge_param.json).
static bool sanitizer_report(const char *err) {
  static const char oom[] = "WARNING: AddressSanitizer failed to allocate";
  if (strstr(err, "LeakSanitizer") || strstr(err, "runtime error:")) return true;
  for (const char *p = strstr(err, "AddressSanitizer"); p; p = strstr(p + 1, "AddressSanitizer"))
    if (p - err < 9 || strncmp(p - 9, oom, sizeof oom - 1) != 0) return true;
  return false;
}

// Runs case c (with env in kiln's environment, or NULL) and holds kiln to the contract.
static void check_case(const Case *c, const char *env) {
  char what[1024];
  describe(c, env, what, sizeof what);
  char out_path[4200];
  snprintf(out_path, sizeof out_path, "%s/out.safetensors", g_dir);
  remove(out_path);

  Run r;
  run_kiln(c->args, env, &r);
  ck_assert_msg(!r.hung, "%s: hung (killed after %d s)", what, HANG_SECONDS);
  ck_assert_msg(!WIFSIGNALED(r.status), "%s: killed by signal %d\nstderr: %s", what,
                WTERMSIG(r.status), r.err);
  ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == c->code,
                "%s: exit %d, expected %d\nstderr: %s", what, WEXITSTATUS(r.status), c->code,
                r.err);
  ck_assert_msg(!sanitizer_report(r.err), "%s: sanitizer report\nstderr: %s", what, r.err);
  for (int i = 0; i < MAX_EXPECT && c->expect[i]; i++)
    ck_assert_msg(strstr(r.err, c->expect[i]), "%s: stderr lacks \"%s\"\nstderr: %s", what,
                  c->expect[i], r.err);
  if (c->code == 1) {  // a message on a line of its own, prefixed by the program's name
    ck_assert_msg(!strncmp(r.err, "kiln: ", 6) || strstr(r.err, "\nkiln: "),
                  "%s: message not prefixed\nstderr: %s", what, r.err);
    ck_assert_msg(access(out_path, F_OK) != 0, "%s: left an output file behind", what);
  }
}

START_TEST(test_kiln_rejects_bad_input_with_its_exit_code_and_place) { check_case(&cases[_i], NULL); }
END_TEST

START_TEST(test_kiln_rejects_bad_settings_in_the_environment) {
  check_case(&env_cases[_i].c, env_cases[_i].env);
}
END_TEST

// Sanity of the harness: the valid model runs, so every failure above is the bad input's.
START_TEST(test_tiny_ok_runs) {
  const char *args[] = {RUN_TINY("in_ok.safetensors"), NULL};
  Run r;
  run_kiln(args, NULL, &r);
  ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "stderr: %s", r.err);
  char out_path[4200];
  snprintf(out_path, sizeof out_path, "%s/out.safetensors", g_dir);
  ck_assert_int_eq(access(out_path, F_OK), 0);
  remove(out_path);
}
END_TEST

// An output in a read-only directory is refused before any work. Tests run as root, for whom
// access() ignores permission bits, so this needs a read-only mount: /proc/sys is one in most
// containers; where it is writable the case is skipped.
START_TEST(test_output_in_read_only_directory_is_refused_before_work) {
  if (access("/proc/sys", W_OK) == 0) return;  // no read-only directory to try
  const char *args[] = {"train", "bad/tiny_ok.json", "--weights", "tmp/w.safetensors", "--data",
                        "tmp/in_ok.safetensors", "-o", "/proc/sys/kiln_out.safetensors", NULL};
  Run r;
  run_kiln(args, NULL, &r);
  ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1, "stderr: %s", r.err);
  ck_assert_msg(strstr(r.err, "/proc/sys/kiln_out.safetensors: cannot create: the directory "
                              "/proc/sys is not writable"), "stderr: %s", r.err);
}
END_TEST

// A temporary a killed run left behind (named, as kiln named them, with a PID that this run
// now has) does not make the write fail; the output gets the usual mode 0666 & ~umask, not
// the temporary's 0600; no temporary of this run is left.
START_TEST(test_write_survives_a_stale_temporary_with_its_pid) {
  char out_path[4200], stale_dir[4200];
  snprintf(stale_dir, sizeof stale_dir, "%s/stale", g_dir);
  ck_assert_int_eq(mkdir(stale_dir, 0755), 0);
  snprintf(out_path, sizeof out_path, "%s/stale/out.safetensors", g_dir);
  const char *args[] = {RUN_TINY_O("tmp/stale/out.safetensors"), NULL};
  mode_t old_mask = umask(022);
  g_stale_tmp_for = out_path;
  Run r;
  run_kiln(args, NULL, &r);
  g_stale_tmp_for = NULL;
  umask(old_mask);
  ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "stderr: %s", r.err);
  struct stat sb;
  ck_assert_int_eq(stat(out_path, &sb), 0);
  ck_assert_int_eq(sb.st_mode & 0777, 0644);
  int others = 0, stale = 0;  // in stale/: out.safetensors and the one stale temporary
  DIR *dir = opendir(stale_dir);
  ck_assert_ptr_nonnull(dir);
  for (struct dirent *e; (e = readdir(dir));) {
    if (!strncmp(e->d_name, "out.safetensors.tmp.", 20)) stale++;
    else if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "out.safetensors"))
      others++;
  }
  closedir(dir);
  ck_assert_int_eq(stale, 1);
  ck_assert_int_eq(others, 0);
}
END_TEST

START_TEST(test_catalogue_has_at_least_30_user_errors) {
  int n = 0;
  for (int i = 0; i < N_CASES; i++) n += cases[i].code == 1;
  ck_assert_int_ge(n, 30);
}
END_TEST

// --- fixture: one temporary directory for the whole run --------------------------------

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[8192];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (remove(p) != 0) remove_dir(p);
  }
  closedir(d);
  rmdir(dir);
}

static void setup(void) {
  const char *base = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/kiln_bad_XXXXXX", base && *base ? base : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
  write_input_files();
  write_model_files();
  write_weight_files();
  // A FIFO no one writes to: opening it for reading the usual way blocks forever.
  char fifo[4200];
  snprintf(fifo, sizeof fifo, "%s/fifo", g_dir);
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  const char *inc = "{\"format\": \"kiln-model/1\", \"include\": \"fifo\"}";
  write_file("include_fifo.json", inc, strlen(inc));
  // A parameter whose name is not UTF-8: kiln init must not write it into a safetensors file.
  const char *bad_name = "{\"format\": \"kiln-model/1\", \"params\": [{\"name\": \"w\xff\", \"shape\": [2], "
                         "\"init\": \"zeros\"}]}";
  write_file("name_utf8.json", bad_name, strlen(bad_name));
  // Outputs that would replace an input or something that is not a regular file.
  char p[4200], q[4200];
  snprintf(p, sizeof p, "%s/tests/bad/tiny_ok.json", g_src);
  FILE *f = fopen(p, "rb");
  ck_assert_ptr_nonnull(f);
  char model[4096];
  size_t n = fread(model, 1, sizeof model, f);
  fclose(f);
  write_file("tiny.json", model, n);
  snprintf(p, sizeof p, "%s/w.safetensors", g_dir);
  snprintf(q, sizeof q, "%s/w_link.safetensors", g_dir);
  ck_assert_int_eq(link(p, q), 0);
  snprintf(q, sizeof q, "%s/out_link.safetensors", g_dir);
  ck_assert_int_eq(symlink("elsewhere.safetensors", q), 0);
}

static void teardown(void) { remove_dir(g_dir); }

int main(void) {
  g_kiln = getenv("KILN");
  if (!g_kiln || !*g_kiln) g_kiln = "./build/kiln";
  g_src = getenv("KILN_SRC");
  if (!g_src || !*g_src) g_src = ".";
  if (access(g_kiln, X_OK) != 0) {
    fprintf(stderr, "test_bad_inputs: no kiln binary at %s (set KILN)\n", g_kiln);
    return EXIT_FAILURE;
  }
  Suite *s = suite_create("bad_inputs");
  TCase *tc = tcase_create("catalogue");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 2 * HANG_SECONDS + 10);
  tcase_add_test(tc, test_catalogue_has_at_least_30_user_errors);
  tcase_add_test(tc, test_tiny_ok_runs);
  tcase_add_test(tc, test_output_in_read_only_directory_is_refused_before_work);
  tcase_add_test(tc, test_write_survives_a_stale_temporary_with_its_pid);
  tcase_add_loop_test(tc, test_kiln_rejects_bad_input_with_its_exit_code_and_place, 0, N_CASES);
  tcase_add_loop_test(tc, test_kiln_rejects_bad_settings_in_the_environment, 0, N_ENV_CASES);
  suite_add_tcase(s, tc);
  return check_run(s);
}
