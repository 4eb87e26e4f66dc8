// Text checks shared by the readers of JSON (model files, safetensors headers) and the
// safetensors writer: UTF-8 validity, and NUL characters, which cJSON's strings cannot hold.
#ifndef KILN_TEXT_H
#define KILN_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

// Whether s[0, n) is valid UTF-8 (no overlong forms, surrogates or code points above
// U+10FFFF); if not, *bad is the offset of the first byte of the first invalid sequence.
bool rt_utf8_valid(const char *s, size_t n, size_t *bad);

// The offset in json[0, n) of the first NUL inside a string, a zero byte or a \u0000 escape
// (cJSON keeps it and its strings end there, so "a\u0000b" would read as "a"); -1 if none.
long rt_json_find_nul(const char *json, size_t n);

// What a parsed JSON value is, for messages: "a string", "a number", "a boolean", "an
// array", "an object" or "null".
struct cJSON;
const char *rt_json_kind(const struct cJSON *j);

// Writes s as a JSON string literal: quotes, backslashes and control characters escaped,
// other bytes (UTF-8 included) as they are.
void rt_json_put_string(FILE *f, const char *s);

#endif
