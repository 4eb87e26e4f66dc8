// kiln.convert_hf(dir, out, model=None) (docs/python.md): kiln_convert_hf, as `kiln
// convert-hf`; pytorch_model.bin through this interpreter (sys.executable) and the
// kiln_torch_to_safetensors.py installed beside the module. Returns the settings.
#include "python/pykiln.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

// A setting's text as an int when it is one, else a float.
static PyObject *number(const char *s) {
  if (s[strspn(s, "-0123456789")] == '\0') return PyLong_FromString(s, NULL, 10);
  return PyFloat_FromDouble(strtod(s, NULL));
}

// python/kiln_torch_to_safetensors.py beside the module's file, as a new bytes object.
static PyObject *script_path(PyObject *module) {
  PyObject *file = PyModule_GetFilenameObject(module);
  if (!file) return NULL;
  PyObject *bytes = py_path(file);
  Py_DECREF(file);
  if (!bytes) return NULL;
  const char *f = PyBytes_AS_STRING(bytes);
  const char *slash = strrchr(f, '/');
  size_t len = slash ? (size_t)(slash - f) : 1;
  const char *name = "/kiln_torch_to_safetensors.py";
  PyObject *r = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(len + strlen(name)));
  if (r) {
    memcpy(PyBytes_AS_STRING(r), slash ? f : ".", len);
    memcpy(PyBytes_AS_STRING(r) + len, name, strlen(name));
  }
  Py_DECREF(bytes);
  return r;
}

PyObject *py_convert_hf(PyObject *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"dir", "out", "model", NULL};
  PyObject *dir_o, *out_o, *model_o = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:convert_hf", names, &dir_o, &out_o, &model_o)) return NULL;
  PyObject *dir = py_path(dir_o), *out = dir ? py_path(out_o) : NULL;
  PyObject *model = out && model_o != Py_None ? py_path(model_o) : NULL;
  PyObject *script = out && (model_o == Py_None || model) ? script_path(self) : NULL;
  PyObject *exe = script ? PySys_GetObject("executable") : NULL;  // borrowed
  PyObject *python = exe && PyUnicode_Check(exe) && PyUnicode_GetLength(exe) > 0 ? py_path(exe) : NULL;
  PyObject *result = NULL;
  if (!script) goto done;
  char *notes = NULL;
  size_t notes_len = 0;
  FILE *nf = open_memstream(&notes, &notes_len);
  if (!nf) {
    PyErr_NoMemory();
    goto done;
  }
  KilnConvertOptions o = {.dir = PyBytes_AS_STRING(dir), .output = PyBytes_AS_STRING(out),
                          .model = model ? PyBytes_AS_STRING(model) : NULL, .models_dir = KILN_SOURCE_DIR "/models",
                          .python = python ? PyBytes_AS_STRING(python) : NULL,
                          .torch_script = PyBytes_AS_STRING(script), .notes = nf};
  KilnConverted *r = PyMem_Malloc(sizeof *r);
  Diag d = {0};
  bool ok = r != NULL;
  if (ok) {
    Py_BEGIN_ALLOW_THREADS
    ok = kiln_convert_hf(&o, r, &d);
    Py_END_ALLOW_THREADS
  }
  fclose(nf);
  if (!r) {
    PyErr_NoMemory();
  } else if (!ok) {
    py_raise(&d);
  } else if (notes_len && PyErr_WarnEx(PyExc_UserWarning, notes, 1) < 0) {
    // a warning turned into an error: raised
  } else if ((result = PyDict_New())) {
    for (int i = 0; i < r->n_sets && result; i++) {
      PyObject *v = number(r->sets[i].value);
      if (!v || PyDict_SetItemString(result, r->sets[i].name, v) < 0) Py_CLEAR(result);
      Py_XDECREF(v);
    }
  }
  PyMem_Free(r);
  free(notes);
done:
  Py_XDECREF(dir);
  Py_XDECREF(out);
  Py_XDECREF(model);
  Py_XDECREF(script);
  Py_XDECREF(python);
  return result;
}
