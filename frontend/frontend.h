// The frontend: model files (JSON, see docs/model-format.md) to operator IR. Resolves
// includes, config (with --set overrides), block templates and repeats, then builds,
// shape-checks and verifies the graph. Every error names the file and JSON path.
#ifndef KILN_FRONTEND_H
#define KILN_FRONTEND_H

#include <stdint.h>

#include "ir/ir.h"

typedef struct FeSet {
  char name[128];     // config entry
  const char *value;  // an expression over other entries, usually a number
} FeSet;

// Loads path into g (initialised here). On failure g is freed and d says why.
bool fe_load_model(const char *path, const FeSet *sets, int n_sets, IrGraph *g, Diag *d);
// The same with other limits (0: the default): at most max_nodes block instances and nodes,
// so that a small file cannot make billions of nodes, and at most max_config config entries
// (their lookups are linear).
#define FE_DEFAULT_MAX_NODES 100000
#define FE_DEFAULT_MAX_CONFIG 4096
// The same call also adds the model's output groups named in output_groups (kiln run
// --output-attentions: "attentions") as outputs (docs/model-format.md, "Output groups").
typedef struct FeLimits {
  int64_t max_nodes;   // --max-nodes
  int64_t max_config;  // --max-config
  const char *const *output_groups;
  int n_output_groups;
} FeLimits;
bool fe_load_model_limited(const char *path, const FeSet *sets, int n_sets, const FeLimits *limits,
                           IrGraph *g, Diag *d);

// Parses "NAME=VALUE" from a --set argument (false if malformed).
bool fe_parse_set(const char *arg, FeSet *out);

#endif
