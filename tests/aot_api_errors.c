// The library API's errors and state, on tests/bad/tiny_ok.json compiled with
// `kiln compile --emit lib` (built and run by tests/aot.sh):
//   aot_api_errors GOOD_WEIGHTS WEIGHTS_MISSING_TABLE OUT.bin
// Each failure returns its code with a message naming the problem; a data error leaves
// the model usable; z (for x = i/8, ids = {1, 4}) goes to OUT.bin for comparison with kiln run.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_model.h"

static int failures;
#define EXPECT(cond, ...)                                  \
  do {                                                     \
    if (!(cond)) {                                         \
      failures++;                                          \
      fprintf(stderr, "FAIL line %d: %s: ", __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
    }                                                      \
  } while (0)

int main(int argc, char **argv) {
  if (argc != 4) return 2;
  char msg[2048] = "";
  KilnModel *m = NULL;
  int rc = kiln_model_create(NULL, &m, msg, sizeof msg);
  EXPECT(rc == KILN_ERR_ARG && !m && strstr(msg, "none were embedded"), "%d %s", rc, msg);
  rc = kiln_model_create(argv[2], &m, msg, sizeof msg);
  EXPECT(rc == KILN_ERR_FILE && !m && strstr(msg, "parameter \"table\" is missing"), "%d %s", rc, msg);
  rc = kiln_model_create(argv[1], &m, msg, sizeof msg);
  EXPECT(rc == KILN_OK && m, "%d %s", rc, msg);
  if (!m) return 1;

  KilnTensorInfo t;
  EXPECT(kiln_model_n_inputs(m) == 2 && kiln_model_n_outputs(m) == 1, "counts");
  rc = kiln_model_input(m, 0, &t);
  EXPECT(rc == KILN_OK && !strcmp(t.name, "x") && !strcmp(t.dtype, "f32") && t.rank == 2 &&
             t.shape[0] == 2 && t.shape[1] == 4 && t.bytes == 32, "x: %s %s %zu", t.name, t.dtype, t.bytes);
  rc = kiln_model_output(m, 0, &t);
  EXPECT(rc == KILN_OK && !strcmp(t.name, "z") && t.bytes == 24, "z: %s %zu", t.name, t.bytes);
  EXPECT(kiln_model_input(m, 2, &t) == KILN_ERR_ARG, "index 2");
  EXPECT(kiln_model_output(m, -1, &t) == KILN_ERR_ARG, "index -1");
  EXPECT(kiln_model_set_threads(m, 0) == KILN_ERR_ARG && strstr(kiln_model_error(m), "0"), "%s",
         kiln_model_error(m));
  EXPECT(kiln_model_set_threads(m, 2) == KILN_OK, "threads 2");

  float x[8], z1[6], z2[6];
  for (int i = 0; i < 8; i++) x[i] = (float)i / 8;
  int64_t ids[2] = {1, 4}, bad[2] = {1, 7};
  const void *in[2] = {x, NULL};
  void *out[1] = {z1};
  rc = kiln_model_run(m, in, out);
  EXPECT(rc == KILN_ERR_ARG && strstr(kiln_model_error(m), "\"z\" needs input \"ids\""), "%d %s", rc,
         kiln_model_error(m));
  in[1] = ids;
  EXPECT(kiln_model_run(m, in, out) == KILN_OK, "%s", kiln_model_error(m));
  in[1] = bad;
  rc = kiln_model_run(m, in, (void *[]){z2});
  EXPECT(rc == KILN_ERR_DATA && strstr(kiln_model_error(m), "\"e\": gather: index 7 out of range [0, 5)"),
         "%d %s", rc, kiln_model_error(m));
  in[1] = ids;  // the status word was cleared: the next run succeeds, with the same result
  EXPECT(kiln_model_run(m, in, (void *[]){z2}) == KILN_OK && !memcmp(z1, z2, sizeof z1), "%s",
         kiln_model_error(m));
  FILE *f = fopen(argv[3], "wb");
  EXPECT(f && fwrite(z1, sizeof z1, 1, f) == 1, "write %s", argv[3]);
  if (f) fclose(f);
  kiln_model_destroy(m);
  kiln_model_destroy(NULL);
  printf("%d failures\n", failures);
  return failures != 0;
}
