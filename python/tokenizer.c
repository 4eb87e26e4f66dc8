// kiln.Tokenizer (docs/python.md): a WordPiece vocabulary (data/wordpiece.h) and encode(),
// the ids `kiln tokenize --vocab` prints.
#include "python/pykiln.h"

#include <stdlib.h>

#include "data/wordpiece.h"

typedef struct PyTokenizer {
  PyObject_HEAD
  WpVocab v;
  bool loaded;
} PyTokenizer;

static int tokenizer_init(PyTokenizer *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"vocab_path", NULL};
  PyObject *path;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O:Tokenizer", names, &path)) return -1;
  PyObject *p = py_path(path);
  if (!p) return -1;
  if (self->loaded) wp_vocab_free(&self->v);
  Diag d = {0};
  self->loaded = wp_vocab_load(PyBytes_AS_STRING(p), &self->v, &d);
  Py_DECREF(p);
  return self->loaded ? 0 : (py_raise(&d), -1);
}

static void tokenizer_dealloc(PyTokenizer *self) {
  if (self->loaded) wp_vocab_free(&self->v);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *tokenizer_encode(PyTokenizer *self, PyObject *args) {
  const char *text;
  if (!PyArg_ParseTuple(args, "s:encode", &text)) return NULL;
  if (!self->loaded) return PyErr_Format(py_kiln_error, "kiln.Tokenizer: not initialised");
  int n = wp_tokenize(&self->v, text, NULL, 0);
  int *ids = malloc(((size_t)n + 1) * sizeof *ids);
  if (!ids) return PyErr_NoMemory();
  wp_tokenize(&self->v, text, ids, n);
  PyObject *out = PyList_New(n);
  for (int i = 0; out && i < n; i++) {
    PyObject *id = PyLong_FromLong(ids[i]);
    if (!id) Py_CLEAR(out);
    else PyList_SET_ITEM(out, i, id);
  }
  free(ids);
  return out;
}

static PyObject *tokenizer_tokens(PyTokenizer *self, PyObject *args) {
  PyObject *ids = tokenizer_encode(self, args);
  for (Py_ssize_t i = 0; ids && i < PyList_GET_SIZE(ids); i++) {
    PyObject *tok = PyUnicode_FromString(self->v.tokens[PyLong_AsLong(PyList_GET_ITEM(ids, i))]);
    if (!tok) Py_CLEAR(ids);
    else PyList_SetItem(ids, i, tok);
  }
  return ids;
}

static PyObject *get_ids(PyTokenizer *self, const char *what, int id) {
  if (!self->loaded) return PyErr_Format(py_kiln_error, "kiln.Tokenizer: not initialised");
  if (id < 0) Py_RETURN_NONE;
  return PyLong_FromLong(id);
}
static PyObject *get_cls(PyTokenizer *self, void *c) { return get_ids(self, "cls", self->v.cls); }
static PyObject *get_sep(PyTokenizer *self, void *c) { return get_ids(self, "sep", self->v.sep); }
static PyObject *get_pad(PyTokenizer *self, void *c) { return get_ids(self, "pad", self->v.pad); }
static PyObject *get_len(PyTokenizer *self, void *c) { return get_ids(self, "size", self->v.n); }

static PyGetSetDef tokenizer_getset[] = {
    {"cls_id", (getter)get_cls, NULL, "the id of [CLS] (None: not in the vocabulary)", NULL},
    {"sep_id", (getter)get_sep, NULL, "the id of [SEP] (None: not in the vocabulary)", NULL},
    {"pad_id", (getter)get_pad, NULL, "the id of [PAD] (None: not in the vocabulary)", NULL},
    {"size", (getter)get_len, NULL, "the number of tokens", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef tokenizer_methods[] = {
    {"encode", (PyCFunction)tokenizer_encode, METH_VARARGS,
     "encode(text) -> list of ids, as kiln tokenize (no [CLS] or [SEP] added)"},
    {"tokens", (PyCFunction)tokenizer_tokens, METH_VARARGS, "tokens(text) -> list of str, as kiln tokenize --tokens"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject py_tokenizer_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kiln.Tokenizer",
    .tp_doc = "Tokenizer(vocab_path): BERT's WordPiece over a vocab.txt",
    .tp_basicsize = sizeof(PyTokenizer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)tokenizer_init,
    .tp_dealloc = (destructor)tokenizer_dealloc,
    .tp_methods = tokenizer_methods,
    .tp_getset = tokenizer_getset,
};
