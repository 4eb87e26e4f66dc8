// libFuzzer target: the input as a model file with its includes and --set overrides, fed to
// fe_load_model (frontend/model.c, config expressions in frontend/expr.c). Part 0 of the
// input (fuzz_util.h) is main.json; a part "--- NAME" is a file NAME beside it, which main.json
// may include; a part "--- --set" holds NAME=VALUE lines, as kiln's --set options.
// Contract: a model loads, or the load fails with a message; never a crash or a leak.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_PARTS 6
#define MAX_SETS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzPart parts[MAX_PARTS];
  int n = fuzz_split(data, size, parts, MAX_PARTS);
  char paths[MAX_PARTS][4200];
  bool written[MAX_PARTS] = {false};
  char *set_text = NULL;
  FeSet sets[MAX_SETS];
  int n_sets = 0;
  for (int k = 1; k < n; k++) {
    if (!strcmp(parts[k].name, "--set")) {
      if (set_text) continue;
      set_text = fuzz_strndup(&parts[k]);
      for (char *line = strtok(set_text, "\n"); line && n_sets < MAX_SETS; line = strtok(NULL, "\n"))
        if (fe_parse_set(line, &sets[n_sets])) n_sets++;  // kiln exits 2 on a malformed one
    } else if (fuzz_name_ok(parts[k].name) && strcmp(parts[k].name, "main.json")) {
      fuzz_write(parts[k].name, parts[k].data, parts[k].size, paths[k], sizeof paths[k]);
      written[k] = true;
    }
  }
  fuzz_write("main.json", parts[0].data, parts[0].size, paths[0], sizeof paths[0]);
  written[0] = true;

  IrGraph g;
  Diag d = {0};
  bool ok = fe_load_model(paths[0], sets, n_sets, &g, &d);
  fuzz_check("fe_load_model", ok, &d);
  if (ok) {
    FILE *null = fopen("/dev/null", "w");
    if (null) {
      ir_print_text(&g, null);
      fclose(null);
    }
    ir_graph_free(&g);
  }

  for (int k = 0; k < n; k++)
    if (written[k]) unlink(paths[k]);
  free(set_text);
  return 0;
}
