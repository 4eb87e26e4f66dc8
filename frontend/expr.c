// Config arithmetic (see expr.h): a recursive-descent evaluator.
//   expr  := term (("+" | "-") term)*
//   term  := unary (("*" | "/" | "//" | "%") unary)*
//   unary := "-" unary | "+" unary | primary
//   primary := number | name | "sqrt" "(" expr ")" | "(" expr ")"
#include "frontend/expr.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *src, *p;
  ExprLookup lookup;
  void *ctx;
  Diag *d;
  int depth;
} Parser;

static void skip_ws(Parser *ps) {
  while (*ps->p == ' ' || *ps->p == '\t') ps->p++;
}

static bool fail(Parser *ps, const char *what) {
  return diag_error(ps->d, "expression \"%s\": %s at column %d", ps->src, what,
                    (int)(ps->p - ps->src) + 1);
}

static bool parse_expr(Parser *ps, double *out);

static bool parse_primary(Parser *ps, double *out) {
  skip_ws(ps);
  if (*ps->p == '(') {
    ps->p++;
    if (!parse_expr(ps, out)) return false;
    skip_ws(ps);
    if (*ps->p != ')') return fail(ps, "expected ')'");
    ps->p++;
    return true;
  }
  if (isdigit((unsigned char)*ps->p) || *ps->p == '.') {
    char *end;
    *out = strtod(ps->p, &end);
    if (end == ps->p) return fail(ps, "bad number");
    ps->p = end;
    return true;
  }
  if (isalpha((unsigned char)*ps->p) || *ps->p == '_') {
    const char *start = ps->p;
    while (isalnum((unsigned char)*ps->p) || *ps->p == '_') ps->p++;
    size_t len = (size_t)(ps->p - start);
    skip_ws(ps);
    if (len == 4 && strncmp(start, "sqrt", 4) == 0 && *ps->p == '(') {
      if (!parse_primary(ps, out)) return false;
      if (*out < 0) return diag_error(ps->d, "expression \"%s\": sqrt of a negative number", ps->src);
      *out = sqrt(*out);
      return true;
    }
    if (!ps->lookup || !ps->lookup(ps->ctx, start, len, out))
      return diag_error(ps->d, "expression \"%s\": unknown name \"%.*s\" (not a config entry)",
                        ps->src, (int)len, start);
    return true;
  }
  return fail(ps, *ps->p ? "unexpected character" : "unexpected end");
}

static bool parse_unary(Parser *ps, double *out) {
  skip_ws(ps);
  if (*ps->p == '-' || *ps->p == '+') {
    char op = *ps->p++;
    if (++ps->depth > 200) return fail(ps, "nested too deeply");
    if (!parse_unary(ps, out)) return false;
    ps->depth--;
    if (op == '-') *out = -*out;
    return true;
  }
  return parse_primary(ps, out);
}

static bool parse_term(Parser *ps, double *out) {
  if (!parse_unary(ps, out)) return false;
  for (;;) {
    skip_ws(ps);
    char op = *ps->p;
    bool floordiv = op == '/' && ps->p[1] == '/';
    if (op != '*' && op != '/' && op != '%') return true;
    ps->p += floordiv ? 2 : 1;
    double rhs;
    if (!parse_unary(ps, &rhs)) return false;
    if (op == '*') {
      *out *= rhs;
    } else {
      if (rhs == 0) return diag_error(ps->d, "expression \"%s\": division by zero", ps->src);
      if (op == '%') {  // the sign of the divisor, so that a == (a // b) * b + a % b
        double r = fmod(*out, rhs);
        *out = r != 0 && (r < 0) != (rhs < 0) ? r + rhs : r;
      } else {
        *out = floordiv ? floor(*out / rhs) : *out / rhs;
      }
    }
  }
}

static bool parse_expr(Parser *ps, double *out) {
  if (++ps->depth > 200) return fail(ps, "nested too deeply");
  if (!parse_term(ps, out)) return false;
  for (;;) {
    skip_ws(ps);
    char op = *ps->p;
    if (op != '+' && op != '-') break;
    ps->p++;
    double rhs;
    if (!parse_term(ps, &rhs)) return false;
    *out = op == '+' ? *out + rhs : *out - rhs;
  }
  ps->depth--;
  return true;
}

bool expr_eval(const char *src, ExprLookup lookup, void *ctx, double *out, Diag *d) {
  Parser ps = {src, src, lookup, ctx, d, 0};
  if (!parse_expr(&ps, out)) return false;
  skip_ws(&ps);
  if (*ps.p) return fail(&ps, "unexpected text");
  if (!isfinite(*out)) return diag_error(d, "expression \"%s\": result is not finite", src);
  return true;
}

bool expr_whole(double v, long long *out) {
  if (!(fabs(v) <= 9007199254740992.0) || v != floor(v)) return false;
  *out = (long long)v;
  return true;
}
