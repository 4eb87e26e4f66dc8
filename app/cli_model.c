// From the command line's options to the library's (api/kiln.h): the settings every command
// that compiles a model passes on, and opening the model with them.
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"

KilnOptions cli_kiln_options(const CliOptions *o, KilnSet *sets) {
  static const char *const attentions[] = {"attentions"};
  for (int i = 0; i < o->n_sets; i++) sets[i] = (KilnSet){o->sets[i].name, o->sets[i].value};
  bool ref = o->backend && strcmp(o->backend, "ref") == 0;
  return (KilnOptions){.backend = ref ? KILN_BACKEND_REF : KILN_BACKEND_JIT, .sets = sets,
                       .n_sets = o->n_sets, .precision = o->precision, .disabled_passes = o->disabled,
                       .n_disabled_passes = o->n_disabled, .dump_llvm = o->dump_llvm,
                       .threads = o->threads, .max_nodes = o->max_nodes, .max_config = o->max_config, .max_memory = o->max_memory, .tuning = o->tuning,
                       .cache_dir = o->no_cache ? NULL : o->cache_dir, .cache_bytes = o->cache_bytes,
                       .output_groups = o->output_attentions ? attentions : NULL,
                       .n_output_groups = o->output_attentions, .recompute_layers = o->recompute_layers,
                       .log = o->verbose ? stderr : NULL};
}

KilnModel *cli_open(const CliOptions *o, const KilnOptions *ko) {
  KilnModel *m;
  Diag d = {0};
  if (kiln_model_open(o->model, ko, &m, &d)) return m;
  cli_error(&d);
  return NULL;
}

bool cli_trace_begin(const CliOptions *o, KilnModel *m, int runs, RtTrace *t, Diag *d) {
  *t = (RtTrace){0};
  if (!o->trace) return true;
  KilnStats st = kiln_stats(m);
  if (!rt_trace_init(t, st.threads, runs, st.steps))
    return diag_error(d, "--trace %s: out of memory for %d runs of %d steps", o->trace, runs, st.steps);
  return kiln_trace(m, t, d);
}

bool cli_trace_end(const CliOptions *o, KilnModel *m, RtTrace *t, Diag *d) {
  if (!o->trace) return true;
  kiln_trace(m, NULL, d);
  bool ok = kiln_trace_write(m, t, o->trace, d);
  if (ok)
    fprintf(stderr, "kiln: trace of %d runs written to %s (open it in https://ui.perfetto.dev or "
            "chrome://tracing)\n", (int)t->runs, o->trace);
  rt_trace_free(t);
  return ok;
}
