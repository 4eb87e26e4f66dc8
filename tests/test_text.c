// Tests of the text and data side of the frontend: the WordPiece tokenizer (wordpiece.c) on
// hand-worked examples, vocab.txt loading and its errors, the synthetic data generator
// (synth.c: determinism, tensors exactly as the model files declare them, answers
// consistent with the soft scores) and the pre-training batches (mlm.c: the 15% / 80-10-10
// rates within binomial bounds, never special tokens, sentence-image mismatches).
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "data/mlm.h"
#include "data/synth.h"
#include "data/wordpiece.h"
#include "runtime/safetensors.h"

// ---------------------------------------------------------------------------------------
// Tokenizer.

static const char *const hand_vocab[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",                       // 0-4
    "un", "##aff", "##able", "hello", ",", "!", "world", "cafe", "naive",  // 5-13
    "中", "##s", "cat", "a", "##a", "straße", "ecole", "?",              // 14-21
};
#define N_HAND (int)(sizeof hand_vocab / sizeof hand_vocab[0])

static WpVocab hand(void) {
  WpVocab v;
  Diag d = {0};
  ck_assert_msg(wp_vocab_from_tokens(hand_vocab, N_HAND, "hand", &v, &d), "%s", d.msg);
  return v;
}

// The ids of text as "1 2 3".
static const char *ids_of(const WpVocab *v, const char *text) {
  static char out[4096];
  int ids[256];
  int n = wp_tokenize(v, text, ids, 256);
  ck_assert_int_le(n, 256);
  out[0] = 0;
  for (int i = 0; i < n; i++) snprintf(out + strlen(out), sizeof out - strlen(out), "%s%d", i ? " " : "", ids[i]);
  return out;
}

START_TEST(test_wordpiece_splits_a_word_into_continuation_pieces) {
  WpVocab v = hand();
  ck_assert_str_eq(ids_of(&v, "unaffable"), "5 6 7");  // un ##aff ##able
  ck_assert_str_eq(ids_of(&v, "cats"), "16 15");        // cat ##s
  ck_assert_str_eq(ids_of(&v, "aaa"), "17 18 18");      // a ##a ##a: longest match first
  wp_vocab_free(&v);
}
END_TEST

START_TEST(test_wordpiece_word_without_a_split_is_one_unk) {
  WpVocab v = hand();
  ck_assert_str_eq(ids_of(&v, "unaffx"), "1");  // "un ##aff" then nothing for "x": the whole word
  ck_assert_str_eq(ids_of(&v, "hello zebra world"), "8 1 11");
  ck_assert_int_eq(v.unk, 1);
  wp_vocab_free(&v);
}
END_TEST

START_TEST(test_wordpiece_splits_punctuation_and_whitespace) {
  WpVocab v = hand();
  ck_assert_str_eq(ids_of(&v, "hello, world!"), "8 9 11 10");
  ck_assert_str_eq(ids_of(&v, "  hello\t\n,world!!  "), "8 9 11 10 10");
  ck_assert_str_eq(ids_of(&v, "cat?"), "16 21");
  ck_assert_str_eq(ids_of(&v, ""), "");
  ck_assert_str_eq(ids_of(&v, " \t "), "");
  wp_vocab_free(&v);
}
END_TEST

START_TEST(test_wordpiece_lower_cases_and_strips_accents) {
  WpVocab v = hand();
  ck_assert_str_eq(ids_of(&v, "HELLO World"), "8 11");
  ck_assert_str_eq(ids_of(&v, "Café NAÏVE"), "12 13");              // precomposed é, Ï
  ck_assert_str_eq(ids_of(&v, "cafe\xcc\x81"), "12");               // e + combining acute U+0301
  ck_assert_str_eq(ids_of(&v, "\xc3\x89" "cole"), "20");            // É
  ck_assert_str_eq(ids_of(&v, "STRASSE"), "1");                     // no ß from SS
  ck_assert_str_eq(ids_of(&v, "Straße"), "19");                     // ß kept (no decomposition)
  ck_assert_str_eq(ids_of(&v, "\xc4\x8c" "at"), "16");              // Č (Latin Extended-A) -> c
  wp_vocab_free(&v);
}
END_TEST

START_TEST(test_wordpiece_cjk_specials_and_long_words) {
  WpVocab v = hand();
  ck_assert_str_eq(ids_of(&v, "cat中cat"), "16 14 16");  // an ideograph is a word of its own
  ck_assert_str_eq(ids_of(&v, "hello [SEP] cat [MASK]"), "8 3 16 4");  // never split, never lower-cased
  ck_assert_str_eq(ids_of(&v, "[sep]"), "1 1 1");  // not a special token: "[", "sep", "]"
  char word[102 + 1];
  memset(word, 'a', 101);
  word[101] = 0;
  ck_assert_str_eq(ids_of(&v, word), "1");  // 101 characters: [UNK]
  word[100] = 0;
  int ids[128];
  ck_assert_int_eq(wp_tokenize(&v, word, ids, 128), 100);  // 100 characters: a ##a ...
  ck_assert_int_eq(wp_tokenize(&v, "hello \xff\xfe world", ids, 128), 2);  // invalid UTF-8 dropped
  ck_assert_int_eq(wp_tokenize(&v, "hello world cat", ids, 1), 3);        // the count, not the cap
  ck_assert_int_eq(ids[0], 8);
  wp_vocab_free(&v);
}
END_TEST

static char tmpdir[256];

static const char *tmp_file(const char *name, const char *content) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fputs(content, f);
  fclose(f);
  return path;
}

START_TEST(test_vocab_file_loads_by_line_number) {
  WpVocab v;
  Diag d = {0};
  const char *p = tmp_file("vocab.txt", "[PAD]\r\n[UNK]\r\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\nhello\n");
  ck_assert_msg(wp_vocab_load(p, &v, &d), "%s", d.msg);
  ck_assert_int_eq(v.n, 8);
  ck_assert_int_eq(v.pad, 0);
  ck_assert_int_eq(v.unk, 1);
  ck_assert_int_eq(v.mask, 4);
  ck_assert_int_eq(wp_vocab_find(&v, "hello", 5), 7);  // a repeated token keeps its last id
  ck_assert_int_eq(wp_tokenize(&v, "hellos", NULL, 0), 2);
  wp_vocab_free(&v);
}
END_TEST

START_TEST(test_vocab_errors_name_the_file) {
  WpVocab v;
  Diag d = {0};
  ck_assert(!wp_vocab_load("/nonexistent/vocab.txt", &v, &d));
  ck_assert_msg(strstr(d.msg, "/nonexistent/vocab.txt") && strstr(d.msg, "cannot open"), "%s", d.msg);
  Diag d2 = {0};
  const char *p = tmp_file("nounk.txt", "[PAD]\n[CLS]\nhello\n");
  ck_assert(!wp_vocab_load(p, &v, &d2));
  ck_assert_msg(strstr(d2.msg, "nounk.txt") && strstr(d2.msg, "[UNK]"), "%s", d2.msg);
  Diag d3 = {0};
  ck_assert(!wp_vocab_load(tmp_file("empty.txt", ""), &v, &d3));
  ck_assert_msg(strstr(d3.msg, "empty"), "%s", d3.msg);
}
END_TEST

// ---------------------------------------------------------------------------------------
// The synthetic data.

static SynthOptions small_opts(uint64_t seed) {
  SynthOptions o = synth_defaults();
  o.seed = seed;
  o.n_train = 40;
  o.n_val = 10;
  o.n_test = 7;
  return o;
}

static void synth_to(const char *sub, const SynthOptions *o) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
  Diag d = {0};
  ck_assert_msg(synth_write(dir, o, &d), "%s", d.msg);
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "%s", path);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc(*n + 1);
  ck_assert_uint_eq(fread(b, 1, *n, f), *n);
  fclose(f);
  return b;
}

static const char *const synth_files[] = {
    "vocab.txt", "answers.txt", "config.txt", "pretrain-train.safetensors", "pretrain-val.safetensors",
    "pretrain-test.safetensors", "pretrain-static-train.safetensors", "vqa-train.safetensors",
    "vqa-val.safetensors", "vqa-test.safetensors", "nlvr2-train.safetensors", "nlvr2-test.safetensors",
    "vcr-mlm-train.safetensors", "flickr-mlm-static-val.safetensors", NULL};

static bool same_file(const char *a_dir, const char *b_dir, const char *name) {
  char a[512], b[512];
  snprintf(a, sizeof a, "%s/%s/%s", tmpdir, a_dir, name);
  snprintf(b, sizeof b, "%s/%s/%s", tmpdir, b_dir, name);
  size_t na, nb;
  char *x = slurp(a, &na), *y = slurp(b, &nb);
  bool same = na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

START_TEST(test_synth_same_seed_same_bytes_other_seed_other_data) {
  SynthOptions a = small_opts(7), b = small_opts(8);
  synth_to("seed7", &a);
  synth_to("seed7again", &a);
  synth_to("seed8", &b);
  for (int i = 0; synth_files[i]; i++) ck_assert_msg(same_file("seed7", "seed7again", synth_files[i]), "%s", synth_files[i]);
  ck_assert(same_file("seed7", "seed8", "vocab.txt"));  // the vocabulary is the grammar's
  for (int i = 3; synth_files[i]; i++) ck_assert_msg(!same_file("seed7", "seed8", synth_files[i]), "%s", synth_files[i]);
}
END_TEST

// Every input of the model file is in the data with its dtype and (examples)+shape.
static void check_against_model(const char *model, const char *data, int64_t n_examples, int num_labels) {
  const SynthOptions o = synth_defaults();
  char v[5][32];
  const char *const *tokens;
  snprintf(v[0], sizeof v[0], "%d", synth_vocab(&tokens));
  snprintf(v[1], sizeof v[1], "%d", o.visual_dim);
  snprintf(v[2], sizeof v[2], "%d", o.regions);
  snprintf(v[3], sizeof v[3], "%d", o.text_len);
  snprintf(v[4], sizeof v[4], "%d", num_labels);
  FeSet sets[] = {{"vocab", v[0]}, {"visual_dim", v[1]}, {"regions", v[2]}, {"text_len", v[3]},
                  {"num_labels", v[4]}, {"hidden", "16"}, {"heads", "2"}, {"layers", "1"},
                  {"intermediate", "32"}, {"batch", "3"}};
  IrGraph g;
  Diag d = {0};
  ck_assert_msg(fe_load_model(model, sets, (int)(sizeof sets / sizeof sets[0]), &g, &d), "%s", d.msg);
  StFile f;
  char path[512];
  snprintf(path, sizeof path, "%s/shapes/%s", tmpdir, data);
  ck_assert_msg(st_read(path, &f, &d), "%s", d.msg);
  int n_inputs = 0;
  for (int i = 0; i < g.n_nodes; i++) {
    const IrNode *n = g.nodes[i];
    if (n->op != IR_OP_INPUT) continue;
    n_inputs++;
    const StTensor *t = st_find(&f, n->name);
    ck_assert_msg(t != NULL, "%s: no %s", data, n->name);
    ck_assert_msg(t->dtype == n->dtype, "%s: %s is %s, the model says %s", data, n->name, dt_name(t->dtype),
                  dt_name(n->dtype));
    ck_assert_int_eq(t->rank, n->shape.rank);
    ck_assert_int_eq(t->shape[0], n_examples);
    for (int k = 1; k < t->rank; k++) ck_assert_int_eq(t->shape[k], n->shape.dim[k]);
  }
  ck_assert_int_ge(n_inputs, 7);
  st_free(&f);
  ir_graph_free(&g);
}

START_TEST(test_synth_tensors_are_the_model_files_inputs) {
  SynthOptions o = small_opts(1);
  synth_to("shapes", &o);
  const char *const *ans;
  int n_ans = synth_answers(&ans);
  check_against_model("models/visualbert-vqa.json", "vqa-train.safetensors", 40, n_ans);
  check_against_model("models/visualbert-vqa-late.json", "vqa-test.safetensors", 7, n_ans);
  check_against_model("models/visualbert-nlvr2.json", "nlvr2-val.safetensors", 10, 2);
  check_against_model("models/visualbert-pretrain.json", "pretrain-train.safetensors", 40, 2);
  check_against_model("models/visualbert-pretrain.json", "pretrain-static-test.safetensors", 7, 2);
  check_against_model("models/visualbert-pretrain-late.json", "nlvr2-mlm-train.safetensors", 40, 2);
  check_against_model("models/visualbert-pretrain.json", "vcr-mlm-static-val.safetensors", 10, 2);
}
END_TEST

// Task-specific pre-training data: TASK-mlm holds the task's rows (VCR: each example's
// right choice) in the pre-training layout, unmasked and matched; TASK-mlm-static one
// masking of them, never a mismatch (the same token types and masks).
START_TEST(test_synth_task_mlm_files_hold_the_tasks_rows) {
  SynthOptions o = small_opts(4);
  synth_to("taskmlm", &o);
  static const char *const tasks[] = {"vqa", "nlvr2", "vcr", "flickr"};
  int64_t T = o.text_len, R = o.regions, Dv = o.visual_dim;
  for (int k = 0; k < 4; k++) {
    StFile task, mlm, stat;
    Diag d = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/taskmlm/%s-train.safetensors", tmpdir, tasks[k]);
    ck_assert_msg(st_read(path, &task, &d), "%s", d.msg);
    snprintf(path, sizeof path, "%s/taskmlm/%s-mlm-train.safetensors", tmpdir, tasks[k]);
    ck_assert_msg(st_read(path, &mlm, &d), "%s", d.msg);
    snprintf(path, sizeof path, "%s/taskmlm/%s-mlm-static-train.safetensors", tmpdir, tasks[k]);
    ck_assert_msg(st_read(path, &stat, &d), "%s", d.msg);
    ck_assert(st_find(&mlm, MLM_CONFIG_TENSOR) && st_find(&stat, MLM_CONFIG_TENSOR));
    const int64_t *tid = st_find(&task, "input_ids")->data, *mid = st_find(&mlm, "input_ids")->data;
    const int64_t *sid = st_find(&stat, "input_ids")->data, *sl = st_find(&stat, "labels")->data;
    const int64_t *ml = st_find(&mlm, "labels")->data, *si = st_find(&mlm, "sentence_image_labels")->data;
    const float *tv = st_find(&task, "visual_embeds")->data, *mv = st_find(&mlm, "visual_embeds")->data;
    ck_assert_int_eq(st_find(&mlm, "input_ids")->shape[0], 40);
    ck_assert_int_eq(st_find(&mlm, "input_ids")->rank, 2);
    int selected = 0;
    for (int64_t b = 0; b < 40; b++) {
      int64_t src = !strcmp(tasks[k], "vcr") ? b * 4 + ((const int64_t *)st_find(&task, "labels")->data)[b] : b;
      ck_assert(!memcmp(mid + b * T, tid + src * T, (size_t)T * sizeof *mid));
      ck_assert(!memcmp(mv + b * R * Dv, tv + src * R * Dv, (size_t)(R * Dv) * sizeof *mv));
      ck_assert_int_eq(si[b], 1);
      for (int64_t i = 0; i < T; i++) {
        ck_assert_int_eq(ml[b * T + i], -100);
        if (sl[b * T + i] != -100) {
          selected++;
          ck_assert_int_eq(sl[b * T + i], mid[b * T + i]);
        } else {
          ck_assert_int_eq(sid[b * T + i], mid[b * T + i]);
        }
      }
    }
    ck_assert_int_gt(selected, 10);
    const StTensor *tt = st_find(&mlm, "token_type_ids"), *stt = st_find(&stat, "token_type_ids");
    ck_assert(!memcmp(tt->data, stt->data, tt->nbytes));
    st_free(&task);
    st_free(&mlm);
    st_free(&stat);
  }
}
END_TEST

// VQA targets: soft scores min(1, 0.3 count) of 10 votes; NLVR2 regions: image 0 then 1.
START_TEST(test_synth_targets_and_regions_are_consistent) {
  SynthOptions o = small_opts(3);
  o.n_train = 300;
  synth_to("targets", &o);
  StFile f;
  Diag d = {0};
  char path[512];
  snprintf(path, sizeof path, "%s/targets/vqa-train.safetensors", tmpdir);
  ck_assert_msg(st_read(path, &f, &d), "%s", d.msg);
  const StTensor *lab = st_find(&f, "labels");
  const float *s = lab->data;
  int64_t K = lab->shape[1];
  for (int64_t i = 0; i < 300; i++) {
    double votes = 0, best = 0;
    for (int64_t k = 0; k < K; k++) {
      float x = s[i * K + k];
      ck_assert(x == 0.0f || fabsf(x - 0.3f) < 1e-6f || fabsf(x - 0.6f) < 1e-6f || fabsf(x - 0.9f) < 1e-6f || x == 1.0f);
      votes += x >= 1.0f ? 4 : x / 0.3;  // at least 4 votes for a score of 1
      best = fmax(best, x);
    }
    ck_assert(votes <= 10.5 && best >= 0.9f);  // 10 annotators, 90% right: a clear winner
  }
  st_free(&f);
  snprintf(path, sizeof path, "%s/targets/nlvr2-train.safetensors", tmpdir);
  ck_assert_msg(st_read(path, &f, &d), "%s", d.msg);
  const int64_t *vtt = st_find(&f, "visual_token_type_ids")->data, *y = st_find(&f, "labels")->data;
  const float *vam = st_find(&f, "visual_attention_mask")->data;
  int64_t R = o.regions, trues = 0;
  for (int64_t i = 0; i < 300; i++) {
    int per_image[2] = {0, 0};
    for (int64_t r = 0; r < R; r++) {
      ck_assert_int_eq(vtt[i * R + r], r >= R / 2);
      per_image[r >= R / 2] += vam[i * R + r] == 1.0f;
    }
    ck_assert(per_image[0] >= 2 && per_image[1] >= 2);
    trues += y[i];
  }
  ck_assert(trues > 100 && trues < 200);  // about half true (binomial(300, 1/2): ±5.8 sigma)
  st_free(&f);
}
END_TEST

START_TEST(test_synth_rejects_text_len_too_short) {
  SynthOptions o = small_opts(1);
  o.text_len = 10;
  char dir[512];
  snprintf(dir, sizeof dir, "%s/short", tmpdir);
  Diag d = {0};
  ck_assert(!synth_write(dir, &o, &d));
  ck_assert_msg(strstr(d.msg, "text_len=10") && strstr(d.msg, "too short"), "%s", d.msg);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Pre-training batches.

enum { CLS = 2, SEP = 3, PAD = 0, MASK = 4, UNK = 1, VOCAB = 60 };

// Rows "[CLS] a... [SEP] b... [SEP] [PAD]..." with words 10..59: len_a, len_b words.
static void make_rows(int64_t *ids, int64_t rows, int64_t len, uint64_t salt) {
  for (int64_t b = 0; b < rows; b++) {
    int64_t *r = ids + b * len, k = 0;
    int la = 3 + (int)((b * 7 + salt) % 5), lb = 2 + (int)((b * 13 + salt) % 6);
    r[k++] = CLS;
    for (int i = 0; i < la; i++) r[k++] = 10 + (int64_t)((b * 31 + (uint64_t)i * 17 + salt) % 50);
    r[k++] = SEP;
    for (int i = 0; i < lb; i++) r[k++] = 10 + (int64_t)((b * 11 + (uint64_t)i * 23 + salt * 3) % 50);
    r[k++] = SEP;
    while (k < len) r[k++] = PAD;
  }
}

// |observed - expected| within 5 standard deviations of a binomial(n, p) count.
static void ck_binomial(int64_t hits, int64_t n, double p, const char *what) {
  double sd = sqrt((double)n * p * (1 - p));
  ck_assert_msg(fabs((double)hits - (double)n * p) <= 5 * sd, "%s: %lld of %lld, expected %.1f ± %.1f", what,
                (long long)hits, (long long)n, (double)n * p, 5 * sd);
}

START_TEST(test_mlm_rates_follow_the_15_80_10_10_rule) {
  enum { ROWS = 2000, LEN = 20 };
  int64_t *ids = malloc(ROWS * LEN * sizeof *ids), *orig = malloc(ROWS * LEN * sizeof *ids),
          *labels = malloc(ROWS * LEN * sizeof *ids);
  make_rows(orig, ROWS, LEN, 0);
  memcpy(ids, orig, ROWS * LEN * sizeof *ids);
  MlmConfig c = mlm_config(CLS, SEP, PAD, MASK, UNK, VOCAB);
  mlm_mask_batch(&c, 42, 5, 0, ids, labels, ROWS, LEN);
  int64_t text = 0, chosen = 0, masked = 0, random = 0, kept = 0;
  for (int64_t i = 0; i < ROWS * LEN; i++) {
    bool special = orig[i] == CLS || orig[i] == SEP || orig[i] == PAD;
    if (special) {  // never selected, never changed
      ck_assert_int_eq(labels[i], -100);
      ck_assert_int_eq(ids[i], orig[i]);
      continue;
    }
    text++;
    if (labels[i] == -100) {
      ck_assert_int_eq(ids[i], orig[i]);
      continue;
    }
    ck_assert_int_eq(labels[i], orig[i]);
    chosen++;
    if (ids[i] == MASK) masked++;
    else if (ids[i] == orig[i]) kept++;
    else {
      random++;
      ck_assert(ids[i] >= 0 && ids[i] < VOCAB && ids[i] != CLS && ids[i] != SEP && ids[i] != PAD && ids[i] != UNK);
    }
  }
  ck_assert_int_gt(text, 10000);
  ck_binomial(chosen, text, 0.15, "selected");
  ck_binomial(masked, chosen, 0.8, "[MASK]");
  // A random token is one of the 55 non-special ids: the original 1 time in 55 (counted kept).
  ck_binomial(random, chosen, 0.1 * 54 / 55, "random");
  ck_binomial(kept, chosen, 0.1 + 0.1 / 55, "kept");
  // Same (seed, step): same batch; another step: another.
  int64_t *again = malloc(ROWS * LEN * sizeof *ids), *labels2 = malloc(ROWS * LEN * sizeof *ids);
  memcpy(again, orig, ROWS * LEN * sizeof *ids);
  mlm_mask_batch(&c, 42, 5, 0, again, labels2, ROWS, LEN);
  ck_assert(memcmp(again, ids, ROWS * LEN * sizeof *ids) == 0 && memcmp(labels, labels2, ROWS * LEN * sizeof *ids) == 0);
  memcpy(again, orig, ROWS * LEN * sizeof *ids);
  mlm_mask_batch(&c, 42, 6, 0, again, labels2, ROWS, LEN);
  ck_assert(memcmp(labels, labels2, ROWS * LEN * sizeof *ids) != 0);
  free(ids), free(orig), free(labels), free(again), free(labels2);
}
END_TEST

START_TEST(test_mlm_mismatch_replaces_half_the_second_captions) {
  enum { ROWS = 1000, LEN = 20, POOL = 300 };
  int64_t *ids = malloc(ROWS * LEN * sizeof *ids), *orig = malloc(ROWS * LEN * sizeof *ids),
          *pool = malloc(POOL * LEN * sizeof *ids), *tt = calloc(ROWS * LEN, sizeof *ids), si[ROWS];
  float *am = calloc(ROWS * LEN, sizeof *am);
  make_rows(orig, ROWS, LEN, 0);
  make_rows(pool, POOL, LEN, 1);
  memcpy(ids, orig, ROWS * LEN * sizeof *ids);
  for (int b = 0; b < ROWS; b++) si[b] = 1;
  MlmConfig c = mlm_config(CLS, SEP, PAD, MASK, UNK, VOCAB);
  mlm_mismatch_batch(&c, 9, 0, 0, ids, tt, am, si, ROWS, LEN, pool, POOL);
  int64_t mismatched = 0;
  for (int b = 0; b < ROWS; b++) {
    const int64_t *r = ids + b * LEN, *o = orig + b * LEN;
    int64_t s1 = 0;
    while (o[s1] != SEP) s1++;
    ck_assert(memcmp(r, o, (size_t)(s1 + 1) * sizeof *r) == 0);  // [CLS] caption_a [SEP] kept
    if (si[b] == 1) {
      ck_assert(memcmp(r, o, LEN * sizeof *r) == 0);
      continue;
    }
    mismatched++;
    ck_assert(memcmp(r, o, LEN * sizeof *r) != 0);
    int64_t s2 = s1 + 1;
    while (r[s2] != SEP) s2++;
    for (int64_t k = 0; k < LEN; k++) {  // types and mask follow the new row
      ck_assert_int_eq(tt[b * LEN + k], k > s1 && k <= s2);
      ck_assert(am[b * LEN + k] == (k <= s2 ? 1.0f : 0.0f));
      if (k > s2) ck_assert_int_eq(r[k], PAD);
    }
  }
  ck_binomial(mismatched, ROWS, 0.5, "mismatched");
  free(ids), free(orig), free(pool), free(tt), free(am);
}
END_TEST

// A process of a data-parallel run treats rows first.. of the step's batch: its rows come
// out as those rows of the whole batch treated at once (masks and mismatches alike).
START_TEST(test_mlm_rows_from_first_equal_those_rows_of_the_whole_batch) {
  enum { ROWS = 64, LEN = 20, POOL = 30, FIRST = 40 };
  int64_t whole[ROWS * LEN], part[(ROWS - FIRST) * LEN], pool[POOL * LEN], lw[ROWS * LEN], lp[ROWS * LEN];
  int64_t ttw[ROWS * LEN] = {0}, ttp[ROWS * LEN] = {0}, siw[ROWS], sip[ROWS];
  float amw[ROWS * LEN] = {0}, amp[ROWS * LEN] = {0};
  make_rows(whole, ROWS, LEN, 0);
  make_rows(pool, POOL, LEN, 1);
  memcpy(part, whole + FIRST * LEN, sizeof part);
  for (int b = 0; b < ROWS; b++) siw[b] = sip[b] = 1;
  MlmConfig c = mlm_config(CLS, SEP, PAD, MASK, UNK, VOCAB);
  mlm_mismatch_batch(&c, 9, 2, 0, whole, ttw, amw, siw, ROWS, LEN, pool, POOL);
  mlm_mask_batch(&c, 9, 2, 0, whole, lw, ROWS, LEN);
  mlm_mismatch_batch(&c, 9, 2, FIRST, part, ttp, amp, sip, ROWS - FIRST, LEN, pool, POOL);
  mlm_mask_batch(&c, 9, 2, FIRST, part, lp, ROWS - FIRST, LEN);
  size_t n = (size_t)(ROWS - FIRST) * LEN;
  ck_assert(memcmp(part, whole + FIRST * LEN, n * sizeof *part) == 0);
  ck_assert(memcmp(lp, lw + FIRST * LEN, n * sizeof *lp) == 0);
  ck_assert(memcmp(ttp, ttw + FIRST * LEN, n * sizeof *ttp) == 0);
  ck_assert(memcmp(amp, amw + FIRST * LEN, n * sizeof *amp) == 0);
  ck_assert(memcmp(sip, siw + FIRST, (ROWS - FIRST) * sizeof *sip) == 0);
  int64_t changed = 0;  // and the rows were treated at all
  for (int b = FIRST; b < ROWS; b++) changed += siw[b] == 0;
  for (size_t i = 0; i < n; i++) changed += lw[FIRST * LEN + i] != -100;
  ck_assert_int_gt(changed, 5);
}
END_TEST


// kiln train's call: mlm_load on a generated pre-training file, mlm_apply on a bound batch.
START_TEST(test_mlm_apply_treats_a_bound_pretraining_batch) {
  SynthOptions o = small_opts(2);
  synth_to("mlm", &o);
  char path[512];
  snprintf(path, sizeof path, "%s/mlm/pretrain-train.safetensors", tmpdir);
  StFile f;
  Diag d = {0};
  ck_assert_msg(st_read(path, &f, &d), "%s", d.msg);
  Mlm m;
  bool present;
  ck_assert_msg(mlm_load(&f, &m, &present, &d), "%s", d.msg);
  ck_assert(present);
  ck_assert_int_eq(m.n_pool, 40);
  const char *const *tokens;
  char vocab_n[16], text_len[16];
  snprintf(vocab_n, sizeof vocab_n, "%d", synth_vocab(&tokens));
  snprintf(text_len, sizeof text_len, "%d", o.text_len);
  FeSet sets[] = {{"vocab", vocab_n}, {"visual_dim", "32"}, {"regions", "8"}, {"text_len", text_len},
                  {"hidden", "16"}, {"heads", "2"}, {"layers", "1"}, {"intermediate", "32"}, {"batch", "40"}};
  IrGraph g;
  ck_assert_msg(fe_load_model("models/visualbert-pretrain.json", sets, 9, &g, &d), "%s", d.msg);
  void **value = calloc((size_t)g.n_nodes + 1, sizeof *value);
  for (int i = 0; i < g.n_nodes; i++) {  // the whole file as one batch, in the model's dtypes
    const IrNode *n = g.nodes[i];
    const StTensor *t = n->op == IR_OP_INPUT ? st_find(&f, n->name) : NULL;
    if (!t) continue;
    value[i] = malloc(t->nbytes);
    ck_assert(t->dtype == n->dtype);
    memcpy(value[i], t->data, t->nbytes);
  }
  ck_assert_msg(mlm_apply(&m, &g, value, 11, 3, 0, &d), "%s", d.msg);
  const int64_t *labels = value[ir_graph_find(&g, "labels")->id], *si = value[ir_graph_find(&g, "sentence_image_labels")->id];
  const int64_t *ids = value[ir_graph_find(&g, "input_ids")->id];
  int selected = 0, mismatched = 0, masks = 0;
  for (int i = 0; i < 40 * o.text_len; i++) {
    selected += labels[i] != -100;
    masks += ids[i] == m.config.mask;
  }
  for (int b = 0; b < 40; b++) mismatched += si[b] == 0;
  ck_assert(selected > 0 && masks > 0 && masks <= selected);
  ck_assert(mismatched > 0 && mismatched < 40);
  // A program that does not read sentence_image_labels (--loss masked_lm_loss): MLM alone,
  // every pair kept (token types, mask and every unselected token as in the file).
  int64_t *si_value = value[ir_graph_find(&g, "sentence_image_labels")->id];
  value[ir_graph_find(&g, "sentence_image_labels")->id] = NULL;
  for (int i = 0; i < g.n_nodes; i++) {  // the file's batch again
    const StTensor *t = g.nodes[i]->op == IR_OP_INPUT ? st_find(&f, g.nodes[i]->name) : NULL;
    if (t && value[i]) memcpy(value[i], t->data, t->nbytes);
  }
  ck_assert_msg(mlm_apply(&m, &g, value, 11, 3, 0, &d), "%s", d.msg);
  const StTensor *ids0 = st_find(&f, "input_ids"), *tt0 = st_find(&f, "token_type_ids"), *am0 = st_find(&f, "attention_mask");
  ck_assert(!memcmp(value[ir_graph_find(&g, "token_type_ids")->id], tt0->data, tt0->nbytes));
  ck_assert(!memcmp(value[ir_graph_find(&g, "attention_mask")->id], am0->data, am0->nbytes));
  int kept = 0, masked_only = 0;
  for (int i = 0; i < 40 * o.text_len; i++) {
    bool same = ids[i] == ((const int64_t *)ids0->data)[i];
    kept += labels[i] == -100 && same;
    masked_only += labels[i] != -100 && labels[i] == ((const int64_t *)ids0->data)[i];
  }
  ck_assert_int_eq(kept + masked_only, 40 * o.text_len);  // unselected: unchanged; selected: labelled
  ck_assert_int_gt(masked_only, 0);
  // A model without the MLM inputs is refused with the name.
  Diag d2 = {0};
  value[ir_graph_find(&g, "sentence_image_labels")->id] = si_value;
  void *saved = value[ir_graph_find(&g, "labels")->id];
  value[ir_graph_find(&g, "labels")->id] = NULL;
  ck_assert(!mlm_apply(&m, &g, value, 11, 3, 0, &d2));  // value NULL: not computed
  ck_assert_msg(strstr(d2.msg, "\"labels\""), "%s", d2.msg);
  value[ir_graph_find(&g, "labels")->id] = saved;
  for (int i = 0; i < g.n_nodes; i++) free(value[i]);
  free(value);
  mlm_free(&m);
  ir_graph_free(&g);
  // A file without mlm_config is not pre-training data (no error).
  snprintf(path, sizeof path, "%s/mlm/vqa-train.safetensors", tmpdir);
  StFile v;
  ck_assert_msg(st_read(path, &v, &d), "%s", d.msg);
  Diag d3 = {0};
  ck_assert(!mlm_load(&v, &m, &present, &d3) && !present && !d3.set);
  st_free(&v);
  st_free(&f);
}
END_TEST

static Suite *text_suite(void) {
  Suite *s = suite_create("text");
  TCase *tok = tcase_create("tokenizer");
  tcase_add_test(tok, test_wordpiece_splits_a_word_into_continuation_pieces);
  tcase_add_test(tok, test_wordpiece_word_without_a_split_is_one_unk);
  tcase_add_test(tok, test_wordpiece_splits_punctuation_and_whitespace);
  tcase_add_test(tok, test_wordpiece_lower_cases_and_strips_accents);
  tcase_add_test(tok, test_wordpiece_cjk_specials_and_long_words);
  tcase_add_test(tok, test_vocab_file_loads_by_line_number);
  tcase_add_test(tok, test_vocab_errors_name_the_file);
  suite_add_tcase(s, tok);
  TCase *syn = tcase_create("synthetic data");
  tcase_add_test(syn, test_synth_same_seed_same_bytes_other_seed_other_data);
  tcase_add_test(syn, test_synth_tensors_are_the_model_files_inputs);
  tcase_add_test(syn, test_synth_targets_and_regions_are_consistent);
  tcase_add_test(syn, test_synth_task_mlm_files_hold_the_tasks_rows);
  tcase_add_test(syn, test_synth_rejects_text_len_too_short);
  suite_add_tcase(s, syn);
  TCase *mlm = tcase_create("pre-training batches");
  tcase_add_test(mlm, test_mlm_rates_follow_the_15_80_10_10_rule);
  tcase_add_test(mlm, test_mlm_mismatch_replaces_half_the_second_captions);
  tcase_add_test(mlm, test_mlm_apply_treats_a_bound_pretraining_batch);
  tcase_add_test(mlm, test_mlm_rows_from_first_equal_those_rows_of_the_whole_batch);
  suite_add_tcase(s, mlm);
  return s;
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/kiln-test-text-XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  SRunner *sr = srunner_create(text_suite());
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return failed != 0;
}
