// Printers and counts: the IR as text (one node a line) or Graphviz, and the summary numbers
// `kiln check` shows (parameter count, FLOPs of one forward evaluation).
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

static void print_attrs(const IrNode *n, FILE *f) {
  const IrAttrSpec *spec = ir_ops[n->op].attrs;
  for (int i = 0; spec[i].name; i++) {
    const IrAttr *a = &n->attr[i];
    fprintf(f, " %s=", spec[i].name);
    switch (spec[i].kind) {
    case IR_ATTR_INT: fprintf(f, "%lld", (long long)a->i); break;
    case IR_ATTR_BOOL: fprintf(f, "%s", a->i ? "true" : "false"); break;
    case IR_ATTR_FLOAT: fprintf(f, "%.9g", a->f); break;
    case IR_ATTR_DTYPE: fprintf(f, "%s", dt_name((DType)a->i)); break;
    case IR_ATTR_INTS:
      fputc('[', f);
      for (int k = 0; k < a->n; k++) fprintf(f, "%s%lld", k ? "," : "", (long long)a->ints[k]);
      fputc(']', f);
      break;
    }
  }
}

static const char *init_str(const IrInit *in, char *buf, size_t n) {
  switch (in->kind) {
  case IR_INIT_NORMAL: snprintf(buf, n, "normal(%g)", in->std); break;
  case IR_INIT_ZEROS: snprintf(buf, n, "zeros"); break;
  case IR_INIT_ONES: snprintf(buf, n, "ones"); break;
  case IR_INIT_COPY: snprintf(buf, n, "copy(%s)", in->copy_of); break;
  }
  return buf;
}

const char *ir_op_label(const IrNode *n, char *buf, size_t size) {
  if (n->op != IR_OP_FUSED) return ir_ops[n->op].name;
  snprintf(buf, size, "fused.%s", ir_fused_kind_name((int)ir_attr_int(n, "kind")));
  return buf;
}

void ir_print_text(const IrGraph *g, FILE *f) {
  fprintf(f, "# %s: %d nodes\n", g->file, g->n_nodes);
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    char s[160], b[256];
    fprintf(f, "%%%d %s: %s%s = %s", n->id, n->name, dt_name(n->dtype),
            ir_shape_str(&n->shape, s, sizeof s), ir_op_label(n, b, sizeof b));
    if (n->op == IR_OP_PARAM) fprintf(f, " init=%s", init_str(&n->init, b, sizeof b));
    for (int k = 0; k < n->n_in; k++) fprintf(f, "%s%%%d", k ? ", " : " ", n->in[k]->id);
    if (n->op == IR_OP_FUSED) {
      char body[1024];
      fprintf(f, " {%s}", ir_body_str(n, false, body, sizeof body));
    } else {
      print_attrs(n, f);
    }
    fputc('\n', f);
  }
  for (int i = 0; i < g->n_outputs; i++)
    fprintf(f, "output %s = %%%d\n", g->outputs[i]->name, g->outputs[i]->id);
  for (int i = 0; i < g->n_losses; i++)
    fprintf(f, "loss %s = %%%d\n", g->losses[i].name, g->losses[i].node->id);
  for (int i = 0; i < g->n_grads; i++)
    fprintf(f, "grad %s = %%%d\n", g->grads[i].of->name, g->grads[i].grad->id);
}

static void dot_escape(const char *s, FILE *f) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
  }
}

void ir_print_dot(const IrGraph *g, FILE *f) {
  fprintf(f, "digraph kiln {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    char s[160], lb[64], body[1024];
    const char *style = n->op == IR_OP_PARAM   ? ", style=filled, fillcolor=\"#e8f0ff\""
                        : n->op == IR_OP_INPUT ? ", style=filled, fillcolor=\"#e8ffe8\""
                                               : "";
    fprintf(f, "  n%d [label=\"%s\\n", n->id, ir_op_label(n, lb, sizeof lb));
    if (n->op == IR_OP_FUSED) {
      fputc('{', f);
      dot_escape(ir_body_str(n, false, body, sizeof body), f);
      fprintf(f, "}\\n");
    }
    dot_escape(n->name, f);
    fprintf(f, "\\n%s%s\"%s];\n", dt_name(n->dtype), ir_shape_str(&n->shape, s, sizeof s), style);
    for (int k = 0; k < n->n_in; k++) fprintf(f, "  n%d -> n%d;\n", n->in[k]->id, n->id);
  }
  for (int i = 0; i < g->n_outputs; i++)
    fprintf(f, "  out%d [shape=oval, label=\"output %s\"];\n  n%d -> out%d;\n", i,
            g->outputs[i]->name, g->outputs[i]->id, i);
  for (int i = 0; i < g->n_losses; i++)
    fprintf(f, "  loss%d [shape=oval, label=\"loss %s\"];\n  n%d -> loss%d;\n", i,
            g->losses[i].name, g->losses[i].node->id, i);
  fprintf(f, "}\n");
}

int64_t ir_count_params(const IrGraph *g) {
  int64_t total = 0;
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->op == IR_OP_PARAM) total += ir_numel(&g->nodes[i]->shape);
  return total;
}

double ir_count_flops(const IrGraph *g) {
  double total = 0;
  for (int i = 0; i < g->n_nodes; i++) total += ir_ops[g->nodes[i]->op].flops(g->nodes[i]);
  return total;
}
