// The module kiln (docs/python.md): kiln.Error, the functions on safetensors files, the
// classes Model, Trainer and Tokenizer, and the helpers every class uses to read its
// options (--set values, threads, backend) the way the command line does.
#define PYKILN_IMPORT_ARRAY  // this file calls import_array
#include "python/pykiln.h"

#include <string.h>

PyObject *py_kiln_error;

PyObject *py_raise(const Diag *d) {
  PyErr_SetString(py_kiln_error, d->set ? d->msg : "unknown error (no message)");
  return NULL;
}

PyObject *py_path(PyObject *o) {
  PyObject *b = NULL;
  if (!PyUnicode_FSConverter(o, &b)) return NULL;
  return b;
}

// One "NAME=VALUE" into sets[*n], the strings held by keep.
static bool add_set(PyObject *name, PyObject *value, KilnSet *s, PyObject *keep) {
  PyObject *n = PyObject_Str(name), *v = PyObject_Str(value);
  bool ok = n && v && PyList_Append(keep, n) == 0 && PyList_Append(keep, v) == 0;
  if (ok) {
    s->name = PyUnicode_AsUTF8(n);
    s->value = PyUnicode_AsUTF8(v);
    ok = s->name && s->value;
  }
  Py_XDECREF(n);
  Py_XDECREF(v);
  return ok;
}

static bool read_sets(PyObject *set, KilnSet **out, int *n_out, PyObject *keep) {
  *out = NULL, *n_out = 0;
  if (!set || set == Py_None) return true;
  PyObject *items;
  if (PyDict_Check(set)) {
    items = PyDict_Items(set);
  } else if (PyList_Check(set) || PyTuple_Check(set)) {
    items = PySequence_List(set);
  } else {
    PyErr_SetString(PyExc_TypeError, "set must be a dict {name: value} or a list of \"NAME=VALUE\" strings");
    return false;
  }
  if (!items) return false;
  Py_ssize_t n = PyList_GET_SIZE(items);
  KilnSet *sets = PyMem_Calloc((size_t)n + 1, sizeof *sets);
  bool ok = sets != NULL;
  if (!ok) PyErr_NoMemory();
  for (Py_ssize_t i = 0; ok && i < n; i++) {
    PyObject *it = PyList_GET_ITEM(items, i);
    if (PyTuple_Check(it) && PyTuple_GET_SIZE(it) == 2) {
      ok = add_set(PyTuple_GET_ITEM(it, 0), PyTuple_GET_ITEM(it, 1), &sets[i], keep);
      continue;
    }
    const char *s = PyUnicode_Check(it) ? PyUnicode_AsUTF8(it) : NULL;
    const char *eq = s ? strchr(s, '=') : NULL;
    if (!eq || eq == s) {
      PyErr_Format(py_kiln_error, "set: %R is not NAME=VALUE", it);
      ok = false;
      break;
    }
    PyObject *name = PyUnicode_FromStringAndSize(s, eq - s), *value = PyUnicode_FromString(eq + 1);
    ok = name && value && add_set(name, value, &sets[i], keep);
    Py_XDECREF(name);
    Py_XDECREF(value);
  }
  Py_DECREF(items);
  if (!ok) {
    PyMem_Free(sets);
    return false;
  }
  *out = sets, *n_out = (int)n;
  return true;
}

bool py_options(PyObject *set, PyObject *threads, const char *backend, const char *precision, KilnOptions *opt,
                KilnSet **sets, PyObject **keep) {
  *opt = (KilnOptions){0};
  *sets = NULL;
  *keep = PyList_New(0);
  if (!*keep) return false;
  if (backend && strcmp(backend, "jit") != 0 && strcmp(backend, "ref") != 0) {
    PyErr_Format(py_kiln_error, "backend must be \"jit\" or \"ref\", not \"%s\"", backend);
    return false;
  }
  opt->backend = backend && !strcmp(backend, "ref") ? KILN_BACKEND_REF : KILN_BACKEND_JIT;
  if (strcmp(precision, "fp32") != 0 && strcmp(precision, "bf16") != 0 && strcmp(precision, "int8") != 0) {
    PyErr_Format(py_kiln_error, "precision \"%s\" is not supported (\"fp32\", \"bf16\" or \"int8\")", precision);
    return false;
  }
  opt->precision = !strcmp(precision, "bf16")   ? KILN_PRECISION_BF16
                   : !strcmp(precision, "int8") ? KILN_PRECISION_INT8
                                                : KILN_PRECISION_FP32;
  if (threads && threads != Py_None) {
    long t = PyLong_AsLong(threads);
    if (t == -1 && PyErr_Occurred()) return false;
    if (t < 1 || t > 1024) {
      PyErr_Format(py_kiln_error, "threads must be 1..1024, not %ld", t);
      return false;
    }
    opt->threads = (int)t;
  }
  if (!read_sets(set, sets, &opt->n_sets, *keep)) return false;
  opt->sets = *sets;
  return true;
}

static PyMethodDef functions[] = {
    {"load_safetensors", py_load_safetensors, METH_VARARGS,
     "load_safetensors(path) -> dict of NumPy arrays, in the file's order"},
    {"save_safetensors", py_save_safetensors, METH_VARARGS,
     "save_safetensors(path, tensors): writes a dict of arrays atomically"},
    {"convert_hf", (PyCFunction)(void (*)(void))py_convert_hf, METH_VARARGS | METH_KEYWORDS,
     "convert_hf(dir, out, model=None) -> the settings (dict): a Hugging Face VisualBERT directory to kiln "
     "weights at out, as kiln convert-hf"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kiln",
    "kiln: compile and run JSON dataflow models of deep-learning networks (docs/python.md)", -1, functions,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_kiln(void);
PyMODINIT_FUNC PyInit_kiln(void) {
  import_array();
  PyObject *m = PyModule_Create(&module);
  if (!m) return NULL;
  py_kiln_error = PyErr_NewExceptionWithDoc("kiln.Error", "A user's mistake, with kiln's message (a ValueError)",
                                            PyExc_ValueError, NULL);
  if (!py_kiln_error || PyModule_AddObjectRef(m, "Error", py_kiln_error) < 0) goto fail;
  PyTypeObject *types[] = {&py_model_type, &py_trainer_type, &py_tokenizer_type};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++)
    if (PyType_Ready(types[i]) < 0 || PyModule_AddObjectRef(m, strrchr(types[i]->tp_name, '.') + 1,
                                                             (PyObject *)types[i]) < 0)
      goto fail;
  return m;
fail:
  Py_DECREF(m);
  return NULL;
}
