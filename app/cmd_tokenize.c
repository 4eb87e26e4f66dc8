// `kiln tokenize` (text to WordPiece ids or tokens) and `kiln run --text`: the text inputs
// (input_ids, token_type_ids, attention_mask) of a model built from a string.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "data/wordpiece.h"

int cmd_tokenize(const CliOptions *o) {
  if (!o->vocab) {
    fprintf(stderr, "kiln: tokenize needs --vocab FILE (kiln tokenize --help)\n");
    return EXIT_USAGE;
  }
  WpVocab v;
  Diag d = {0};
  if (!wp_vocab_load(o->vocab, &v, &d)) {
    cli_error(&d);
    return EXIT_USER;
  }
  int n = wp_tokenize(&v, o->model, NULL, 0);
  int *ids = malloc(((size_t)n + 1) * sizeof *ids);
  wp_tokenize(&v, o->model, ids, n);
  for (int i = 0; i < n; i++) {
    if (o->tokens) printf("%s%s", i ? " " : "", v.tokens[ids[i]]);
    else printf("%s%d", i ? " " : "", ids[i]);
  }
  printf("\n");
  free(ids);
  wp_vocab_free(&v);
  return 0;
}

// --- kiln run --text -------------------------------------------------------------------

// The model's input `name`, shaped like input_ids (batch, text_len).
static bool text_input(const KilnModel *m, const char *name, const KilnTensorInfo *ids, KilnTensorInfo *t,
                       Diag *d) {
  if (!kiln_find(m, KILN_INPUT, name, t))
    return diag_error(d, "%s: --text: the model has no input \"%s\"", kiln_model_file(m), name);
  if (t->rank != 2 || t->shape[0] != ids->shape[0] || t->shape[1] != ids->shape[1])
    return diag_error(d, "%s: --text: input \"%s\" is not shaped like input_ids (batch, text_len)",
                      kiln_model_file(m), name);
  return true;
}

bool cli_text_inputs(const KilnModel *m, const char *text, const char *vocab_path, StFile *inf, Diag *d) {
  KilnTensorInfo in[3];
  if (!kiln_find(m, KILN_INPUT, "input_ids", &in[0]) || in[0].rank != 2)
    return diag_error(d, "%s: --text: the model has no input \"input_ids\" of shape (batch, text_len)",
                      kiln_model_file(m));
  if (!text_input(m, "token_type_ids", &in[0], &in[1], d) || !text_input(m, "attention_mask", &in[0], &in[2], d))
    return false;
  WpVocab v;
  if (!wp_vocab_load(vocab_path, &v, d)) return false;
  if (v.cls < 0 || v.sep < 0 || v.pad < 0) {
    wp_vocab_free(&v);
    return diag_error(d, "%s: --text needs the tokens [CLS], [SEP] and [PAD] in the vocabulary", vocab_path);
  }
  int64_t batch = in[0].shape[0], len = in[0].shape[1];
  int n = wp_tokenize(&v, text, NULL, 0);
  int *tok = malloc(((size_t)n + 1) * sizeof *tok);
  wp_tokenize(&v, text, tok, n);
  int keep = n;
  if (len < 2) keep = 0;
  else if (n > len - 2) keep = (int)(len - 2);
  if (keep < n)
    fprintf(stderr, "kiln: warning: --text has %d tokens; truncated to %d (text_len %lld with [CLS] and [SEP])\n",
            n, keep, (long long)len);

  // The new file: the three text tensors, then every other tensor of inf, in one buffer.
  size_t text_bytes[3], total = 0;
  for (int k = 0; k < 3; k++) total += text_bytes[k] = (size_t)(batch * len) * dt_size(in[k].dtype);
  for (int k = 0; k < inf->n; k++) total += inf->tensors[k].nbytes;
  StFile out = {.path = strdup(inf->path), .buffer = malloc(total + 1)};
  out.tensors = calloc((size_t)inf->n + 3, sizeof *out.tensors);
  char *p = out.buffer;
  for (int k = 0; k < 3; k++) {
    StTensor *t = &out.tensors[out.n++];
    t->name = strdup(in[k].name);
    t->dtype = in[k].dtype;
    t->rank = 2;
    t->shape[0] = batch;
    t->shape[1] = len;
    t->nbytes = text_bytes[k];
    t->data = p;
    p += text_bytes[k];
    for (int64_t b = 0; b < batch; b++)
      for (int64_t i = 0; i < len; i++) {
        // [CLS] tok[0..keep) [SEP] [PAD]...
        int64_t real = keep + 2 <= len ? keep + 2 : len;
        double val = k == 1 ? 0 : k == 2 ? (i < real) : i == 0 ? v.cls : i <= keep ? tok[i - 1] : i == keep + 1 ? v.sep : v.pad;
        dt_store(t->dtype, t->data, (size_t)(b * len + i), val);
      }
  }
  for (int k = 0; k < inf->n; k++) {
    const StTensor *s = &inf->tensors[k];
    if (!strcmp(s->name, "input_ids") || !strcmp(s->name, "token_type_ids") || !strcmp(s->name, "attention_mask"))
      continue;
    StTensor *t = &out.tensors[out.n++];
    *t = *s;
    t->name = strdup(s->name);
    t->data = p;
    memcpy(p, s->data, s->nbytes);
    p += s->nbytes;
  }
  out.size = total;
  free(tok);
  wp_vocab_free(&v);
  st_free(inf);
  *inf = out;
  return true;
}
