// From the command line's options to the library's (api/kiln.h): the settings every command
// that compiles a model passes on, and opening the model with them.
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"

KilnOptions cli_kiln_options(const CliOptions *o, KilnSet *sets) {
  for (int i = 0; i < o->n_sets; i++) sets[i] = (KilnSet){o->sets[i].name, o->sets[i].value};
  bool ref = o->backend && strcmp(o->backend, "ref") == 0;
  return (KilnOptions){.backend = ref ? KILN_BACKEND_REF : KILN_BACKEND_JIT, .sets = sets,
                       .n_sets = o->n_sets, .disabled_passes = o->disabled,
                       .n_disabled_passes = o->n_disabled, .dump_llvm = o->dump_llvm,
                       .threads = o->threads, .max_nodes = o->max_nodes, .max_config = o->max_config, .max_memory = o->max_memory, .tuning = o->tuning, .log = o->verbose ? stderr : NULL};
}

KilnModel *cli_open(const CliOptions *o, const KilnOptions *ko) {
  KilnModel *m;
  Diag d = {0};
  if (kiln_model_open(o->model, ko, &m, &d)) return m;
  cli_error(&d);
  return NULL;
}
