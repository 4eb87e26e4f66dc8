// Tests of the compile cache's file store (runtime/cache.c): what is put is got back, a
// flipped byte, a truncated file or a payload under another key's name is a miss and is
// removed, trimming removes the least recently used entries first (a hit counts as a use),
// info counts and clear empties; and the keys' hash separates what it is fed.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "runtime/cache.h"
#include "tests/check_run.h"

static char dir[64];

static void make_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/kiln-test-cache-XXXXXX");
  ck_assert(mkdtemp(dir) != NULL);
}

static void remove_dir(void) {
  int64_t n;
  ck_assert(rt_cache_clear(dir, &n, NULL));
  ck_assert_int_eq(rmdir(dir), 0);
}

static const char *key_of(const char *s) {
  static char key[RT_CACHE_KEY_CHARS + 1];
  RtHash h = rt_hash_start();
  rt_hash_str(&h, s);
  rt_hash_hex(&h, key);
  return key;
}

static void set_mtime(const char *key, time_t t) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s.entry", dir, key);
  struct timespec ts[2] = {{t, 0}, {t, 0}};
  ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

START_TEST(test_cache_gets_back_what_was_put) {
  make_dir();
  RtCacheOptions c = {.dir = dir};
  size_t size = 0;
  ck_assert_ptr_null(rt_cache_get(&c, key_of("a"), &size));
  char data[1000];
  for (int i = 0; i < 1000; i++) data[i] = (char)(i * 7);
  ck_assert(rt_cache_put(&c, key_of("a"), data, sizeof data));
  char *got = rt_cache_get(&c, key_of("a"), &size);
  ck_assert_ptr_nonnull(got);
  ck_assert_uint_eq(size, sizeof data);
  ck_assert_int_eq(memcmp(got, data, sizeof data), 0);
  free(got);
  RtCacheInfo info;
  ck_assert(rt_cache_info(dir, &info, NULL));
  ck_assert_int_eq(info.entries, 1);
  ck_assert_uint_eq(info.bytes, sizeof data + 32);
  remove_dir();
}
END_TEST

START_TEST(test_cache_corrupt_truncated_or_renamed_entries_are_misses_and_removed) {
  make_dir();
  RtCacheOptions c = {.dir = dir};
  char data[500] = {1, 2, 3}, path[256];
  size_t size;
  for (int damage = 0; damage < 3; damage++) {
    ck_assert(rt_cache_put(&c, key_of("b"), data, sizeof data));
    snprintf(path, sizeof path, "%s/%s.entry", dir, key_of("b"));
    if (damage == 0) {  // a flipped byte in the payload
      FILE *f = fopen(path, "r+b");
      fseek(f, 300, SEEK_SET);
      fputc(0x40, f);
      fclose(f);
    } else if (damage == 1) {  // cut short
      ck_assert_int_eq(truncate(path, 200), 0);
    } else {  // another key's intact entry under this name
      char other[256];
      ck_assert(rt_cache_put(&c, key_of("c"), data, sizeof data));
      snprintf(other, sizeof other, "%s/%s.entry", dir, key_of("c"));
      ck_assert_int_eq(rename(other, path), 0);
    }
    ck_assert_ptr_null(rt_cache_get(&c, key_of("b"), &size));
    ck_assert_int_ne(access(path, F_OK), 0);  // removed
  }
  remove_dir();
}
END_TEST

START_TEST(test_cache_trim_removes_least_recently_used_first) {
  make_dir();
  RtCacheOptions c = {.dir = dir, .max_bytes = 3 * (1000 + 32)};
  char data[1000] = {0};
  const char *names[] = {"old", "older", "used", "new"};
  char keys[4][RT_CACHE_KEY_CHARS + 1];
  for (int i = 0; i < 4; i++) {
    strcpy(keys[i], key_of(names[i]));
    ck_assert(rt_cache_put(&c, keys[i], data, sizeof data));
  }
  set_mtime(keys[0], 2000), set_mtime(keys[1], 1000), set_mtime(keys[2], 500), set_mtime(keys[3], 3000);
  size_t size;
  free(rt_cache_get(&c, keys[2], &size));  // "used": now the most recent
  rt_cache_trim(&c);
  char path[256];
  bool present[4];
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/%s.entry", dir, keys[i]);
    present[i] = access(path, F_OK) == 0;
  }
  ck_assert(present[0] && !present[1] && present[2] && present[3]);
  c.max_bytes = 1000 + 32;
  rt_cache_trim(&c);
  RtCacheInfo info;
  ck_assert(rt_cache_info(dir, &info, NULL));
  ck_assert_int_eq(info.entries, 1);  // "used", the newest
  void *kept = rt_cache_get(&c, keys[2], &size);
  ck_assert_ptr_nonnull(kept);
  free(kept);
  int64_t removed;
  ck_assert(rt_cache_clear(dir, &removed, NULL));
  ck_assert_int_eq(removed, 1);
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_cache_directory_that_is_a_file_is_not_usable) {
  make_dir();
  char file[128];
  snprintf(file, sizeof file, "%s/f", dir);
  fclose(fopen(file, "w"));
  Diag d = {0};
  ck_assert(!rt_cache_usable(file, &d));
  ck_assert_msg(strstr(d.msg, file) && strstr(d.msg, "not a directory"), "%s", d.msg);
  char nested[160];
  snprintf(nested, sizeof nested, "%s/x/y", dir);
  ck_assert(rt_cache_usable(nested, NULL));  // created with its parent
  unlink(file);
  rmdir(nested);
  snprintf(nested, sizeof nested, "%s/x", dir);
  rmdir(nested);
  rmdir(dir);
}
END_TEST

START_TEST(test_hash_separates_strings_by_their_ends) {
  RtHash a = rt_hash_start(), b = rt_hash_start();
  rt_hash_str(&a, "ab"), rt_hash_str(&a, "c");
  rt_hash_str(&b, "a"), rt_hash_str(&b, "bc");
  ck_assert(a.a != b.a && a.b != b.b);
  char ka[RT_CACHE_KEY_CHARS + 1], kb[RT_CACHE_KEY_CHARS + 1];
  rt_hash_hex(&a, ka), rt_hash_hex(&b, kb);
  ck_assert_int_eq(strlen(ka), RT_CACHE_KEY_CHARS);
  ck_assert_str_ne(ka, kb);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("cache");
  TCase *tc = tcase_create("store");
  tcase_add_test(tc, test_cache_gets_back_what_was_put);
  tcase_add_test(tc, test_cache_corrupt_truncated_or_renamed_entries_are_misses_and_removed);
  tcase_add_test(tc, test_cache_trim_removes_least_recently_used_first);
  tcase_add_test(tc, test_cache_directory_that_is_a_file_is_not_usable);
  tcase_add_test(tc, test_hash_separates_strings_by_their_ends);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return check_run(suite()); }
