// libFuzzer target: part 0 of the input (fuzz_util.h) as a vocab.txt, loaded by wp_vocab_load
// (data/wordpiece.c) from a file; each later part a text that wp_tokenize encodes with it.
// Contract: the vocabulary loads or is refused with a message; a text encodes to the same
// count of ids whether or not they are stored, every id a line of the vocabulary.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/wordpiece.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_PARTS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzPart parts[MAX_PARTS];
  int n = fuzz_split(data, size, parts, MAX_PARTS);
  char path[4200];
  fuzz_write("vocab.txt", parts[0].data, parts[0].size, path, sizeof path);
  WpVocab v;
  Diag d = {0};
  bool ok = wp_vocab_load(path, &v, &d);
  unlink(path);
  fuzz_check("wp_vocab_load", ok, &d);
  if (!ok) return 0;
  for (int k = 1; k < n; k++) {
    char *text = fuzz_strndup(&parts[k]);
    int count = wp_tokenize(&v, text, NULL, 0);
    int *ids = malloc(((size_t)count + 1) * sizeof *ids);
    if (count < 0 || !ids) abort();
    if (wp_tokenize(&v, text, ids, count) != count) {
      fprintf(stderr, "wp_tokenize counts differently when it stores the ids\n");
      abort();
    }
    for (int i = 0; i < count; i++)
      if (ids[i] < 0 || ids[i] >= v.n) {
        fprintf(stderr, "wp_tokenize: id %d of %d is %d, outside the vocabulary of %d\n", i, count,
                ids[i], v.n);
        abort();
      }
    free(ids);
    free(text);
  }
  wp_vocab_free(&v);
  return 0;
}
